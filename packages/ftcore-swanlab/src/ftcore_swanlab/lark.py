"""Lark (Feishu) webhook notifications, signed with HMAC-SHA256 when a secret is set.

A notification that fails, or a webhook that does not answer within the timeout, is logged and
never stops training.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.request

log = logging.getLogger("ftcore")


def sign(timestamp: int, secret: str) -> str:
    """Lark's signature: base64(HMAC-SHA256(key = "<timestamp>\\n<secret>", message = b""))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def payload(text: str, secret: str | None, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    body = {"timestamp": timestamp, "msg_type": "text", "content": {"text": text}}
    if secret:
        body["sign"] = sign(timestamp, secret)
    return body


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook address, without repeating it (it holds a token)."""
    if not url.startswith(("https://", "http://")):
        return "must be an http(s):// address (Lark's start with https://open.feishu.cn/)"
    return None


class LarkNotifier:
    def __init__(self, webhook_url: str, secret: str | None = None, timeout: float = 5.0):
        self.webhook_url = webhook_url
        self.secret = secret
        self.timeout = timeout

    def send(self, text: str) -> bool:
        """POST one text message; True when Lark accepted it. Never raises."""
        data = json.dumps(payload(text, self.secret)).encode()
        try:
            request = urllib.request.Request(
                self.webhook_url, data=data, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
            if answer.get("code", 0) not in (0, None):
                log.warning("ftcore: Lark refused the notification: %s", answer.get("msg", answer))
                return False
            return True
        except Exception as exc:  # any failure of the webhook: log it, never stop training
            # The URL itself is a secret: say what failed, not where.
            reason = str(getattr(exc, "reason", None) or getattr(exc, "code", None) or "")
            if not reason or self.webhook_url in reason:
                reason = type(exc).__name__
            log.warning("ftcore: the Lark notification failed (%s); training goes on", reason)
            return False
