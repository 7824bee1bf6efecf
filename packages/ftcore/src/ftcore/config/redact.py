"""Secret redaction: whenever a config is printed, logged or saved, secrets are masked."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

_SECRET_SUFFIXES = (
    "_api_key",
    "_api_keys",
    "_secret",
    "_secrets",
    "_token",
    "_password",
    "_passwords",
)
_SECRET_NAMES = {"api_key", "secret", "token", "password"}
# Tokenizer special tokens end in ``_token`` but are vocabulary, not credentials.
_VOCABULARY_TOKENS = {
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "mask_token",
    "sep_token",
    "cls_token",
}
# ``scheme://user:password@host``: the credentials part of any URL.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)")


def is_secret_key(key: str) -> bool:
    """Whether a config key holds a secret: ``*_api_key(s)``, ``*_secret(s)``, ``*_token``,
    ``*_password(s)``, or anything about a webhook."""
    name = key.lower()
    if name in _VOCABULARY_TOKENS:
        return False
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES) or "webhook" in name


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret overrides (``key=v``, ``--key v``) masked."""
    masked = []
    hide_next = False
    for word in argv:
        if hide_next:
            masked.append(REDACTED)
            hide_next = False
            continue
        key, eq, value = word.lstrip("-").partition("=")
        leaf = key.replace("-", "_").split(".")[-1]
        if is_secret_key(leaf):
            if eq:
                masked.append(word[: len(word) - len(value)] + REDACTED)
                continue
            hide_next = word.startswith("--")
        masked.append(_URL_CREDENTIALS.sub(REDACTED, word))
    return masked


def redact(data: Any) -> Any:
    """A copy of ``data`` (dicts and lists of plain values) with every secret value masked, and
    the credentials of any URL in a string."""
    if isinstance(data, dict):
        return {
            key: REDACTED
            if is_secret_key(str(key)) and data[key] not in (None, "")
            else redact(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact(item) for item in data]
    if isinstance(data, str):
        return _URL_CREDENTIALS.sub(REDACTED, data)
    return data
