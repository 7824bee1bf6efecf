"""Secret redaction: whenever a config is printed, logged or saved, secrets are masked."""

from __future__ import annotations

from typing import Any

REDACTED = "***"

_SECRET_SUFFIXES = ("_api_key", "_secret", "_token", "_password", "webhook_url")
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


def is_secret_key(key: str) -> bool:
    """Whether a config key holds a secret (``*_api_key``, ``*_secret``, ``*_token``, webhook URLs)."""
    name = key.lower()
    if name in _VOCABULARY_TOKENS:
        return False
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def redact(data: Any) -> Any:
    """A copy of ``data`` (dicts and lists of plain values) with every secret value masked."""
    if isinstance(data, dict):
        return {
            key: REDACTED if is_secret_key(str(key)) and value not in (None, "") else redact(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact(item) for item in data]
    return data
