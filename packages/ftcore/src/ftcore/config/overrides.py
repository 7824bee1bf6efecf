"""Command-line overrides: ``key=value``, ``--key value``, ``--key=value``; dotted for nested keys.

Values are coerced through the schema: a value for a string key stays the text as typed, any
other value is read as YAML (``true``, ``3``, ``[a, b]``) and then validated with the config.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from ftcore.errors import FtcoreError

_KEY_VALUE = re.compile(r"^[A-Za-z_][\w.-]*=")
_NULLS = {"null", "~", "none", "None", "NULL"}


def parse_override_args(args: list[str] | tuple[str, ...]) -> list[tuple[str, str | None]]:
    """Turn CLI words into ``(dotted key, text)`` pairs.

    ``--flag`` with no value (at the end, or before another ``--option`` or ``key=value``) gives
    the text ``None``: ``true`` for a yes/no key, an error for any other.
    """
    pairs: list[tuple[str, str | None]] = []
    index = 0
    while index < len(args):
        word = args[index]
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            if not eq:
                following = args[index + 1] if index + 1 < len(args) else None
                if following is None or following.startswith("--") or _KEY_VALUE.match(following):
                    value = None
                else:
                    value = following
                    index += 1
        elif "=" in word:
            key, _, value = word.partition("=")
        else:
            raise FtcoreError(
                f"cannot read override '{word}': write key=value or --key value "
                "(dotted keys for nested values, e.g. diffusion.eps=0.001)"
            )
        key = key.strip().replace("-", "_")
        if not key:
            raise FtcoreError(f"cannot read override '{word}': the key is empty")
        pairs.append((key, value))
        index += 1
    return pairs


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def annotation_at(model: type[BaseModel] | None, parts: list[str]) -> Any:
    """The annotation of the field at a dotted path, or ``None`` if the path leaves the schema."""
    annotation: Any = model
    for part in parts:
        annotation = _unwrap_optional(annotation)
        origin = typing.get_origin(annotation)
        if part.isdigit() and origin is list:
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return None
            annotation = info.annotation
        else:
            return None
    return _unwrap_optional(annotation)


def coerce_text(text: str, annotation: Any) -> Any:
    """The value of an override's text for a field of type ``annotation``; ``null`` unsets."""
    if text in _NULLS:
        return None
    if annotation is str:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``data[a][b]... = value``, creating mappings and indexing lists on the way."""
    target: Any = data
    for depth, part in enumerate(parts[:-1]):
        key: Any = int(part) if part.isdigit() and isinstance(target, list) else part
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(target, dict):
                target = target.setdefault(key, {})
            else:
                where = ".".join(parts[: depth + 1])
                raise FtcoreError(
                    f"cannot apply override {'.'.join(parts)}: no item '{where}'"
                ) from None
    last: Any = parts[-1]
    if isinstance(target, list) and last.isdigit() and int(last) < len(target):
        target[int(last)] = value
    elif isinstance(target, dict):
        target[last] = value
    else:
        raise FtcoreError(f"cannot apply override {'.'.join(parts)}: its parent is not a mapping")


def apply_overrides(
    raw: dict[str, Any], overrides: list[tuple[str, str | None]], model: type[BaseModel]
) -> None:
    """Apply ``(dotted key, text)`` overrides to the raw config, coerced through ``model``."""
    for key, text in overrides:
        parts = key.split(".")
        annotation = annotation_at(model, parts)
        if text is None:  # a bare --flag
            if annotation not in (bool, None):
                flag = "--" + key.replace("_", "-")
                raise FtcoreError(
                    f"{flag} needs a value: {flag} VALUE or {key}=VALUE (a bare {flag} sets "
                    "yes/no keys only)"
                )
            value: Any = True
        else:
            value = coerce_text(text, annotation)
        if isinstance(value, bool) and annotation in (int, float):
            raise FtcoreError(f"cannot read override {key}={text or 'true'}: {key} takes a number")
        set_path(raw, parts, value)
