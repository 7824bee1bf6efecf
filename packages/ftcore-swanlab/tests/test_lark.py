"""Lark payloads and signatures against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from lark_server import LarkServer

from ftcore_swanlab.lark import LarkNotifier, payload, sign


def lark_signature(timestamp: int, secret: str) -> str:
    """Lark's documented check, written out independently."""
    string_to_sign = f"{timestamp}\n{secret}"
    digest = hmac.new(string_to_sign.encode("utf-8"), digestmod=hashlib.sha256).digest()
    return base64.b64encode(digest).decode("utf-8")


def test_signature_matches_larks_algorithm():
    assert sign(1700000000, "s3cret") == lark_signature(1700000000, "s3cret")
    assert "sign" not in payload("hi", None)


def test_a_signed_message_reaches_the_webhook():
    with LarkServer() as server:
        assert LarkNotifier(server.url, "s3cret").send("training started")
    [body] = server.received
    assert body["msg_type"] == "text" and body["content"] == {"text": "training started"}
    assert abs(body["timestamp"] - time.time()) < 60
    assert body["sign"] == lark_signature(body["timestamp"], "s3cret")


def test_an_erroring_or_hanging_webhook_never_raises(caplog):
    with LarkServer("error") as server:
        assert LarkNotifier(server.url, "s").send("x") is False
    with LarkServer("hang", hang_seconds=5) as server:
        start = time.perf_counter()
        assert LarkNotifier(server.url, None, timeout=0.5).send("x") is False
        assert time.perf_counter() - start < 3
    assert all("t0k3n" not in message for message in caplog.messages)  # the URL is a secret


def test_an_address_without_a_scheme_never_raises_nor_shows_its_token(caplog):
    url = "open.feishu.cn/open-apis/bot/v2/hook/t0k3n"
    assert LarkNotifier(url, "s").send("x") is False
    assert caplog.messages and all("t0k3n" not in message for message in caplog.messages)


def test_a_refused_connection_says_why(caplog):
    assert LarkNotifier("http://127.0.0.1:9/open-apis/bot/v2/hook/t0k3n", None).send("x") is False
    assert any("refused" in message.lower() for message in caplog.messages), caplog.messages
    assert all("t0k3n" not in message for message in caplog.messages)
