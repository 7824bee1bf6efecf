"""Turn pydantic validation errors into one short, fixable message per config path."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ftcore.config.names import OTHER_TOOLS_KEYS
from ftcore.config.redact import is_secret_key
from ftcore.errors import Problem
from ftcore.suggest import did_you_mean as suggest

_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def format_path(parts: typing.Sequence[str | int]) -> str:
    """``("datasets", 0, "type")`` -> ``datasets[0].type``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model inside ``Optional[...]``, ``list[...]`` or ``dict[..., ...]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is typing.Annotated:
        return _nested_model(typing.get_args(annotation)[0])
    found = {m for arg in typing.get_args(annotation) if (m := _nested_model(arg)) is not None}
    return found.pop() if len(found) == 1 else None


def _is_union(annotation: Any) -> bool:
    """A union whose errors pydantic tags by member (``X | None`` alone is not tagged)."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    return len([arg for arg in typing.get_args(annotation) if arg is not type(None)]) > 1


def _walk(
    model: type[BaseModel], loc: tuple[Any, ...]
) -> tuple[list[str | int], type[BaseModel] | None]:
    """Clean a pydantic ``loc``: drop union-member tags, keep keys and indexes.

    Returns the cleaned path and the model that holds its last key (for "did you mean").
    """
    path: list[str | int] = []
    current: type[BaseModel] | None = model
    holder: type[BaseModel] | None = model
    in_union = False
    for item in loc:
        if isinstance(item, int):
            path.append(item)
            continue
        if current is not None and item in current.model_fields:
            holder = current
            annotation = current.model_fields[item].annotation
            in_union = _is_union(annotation)
            current = _nested_model(annotation)
            path.append(item)
        elif in_union:
            in_union = False  # a union-member tag such as "bool" or "literal['auto']"
        else:
            holder = current
            path.append(item)
            current = None
    return path, holder


def _expected(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        if len(options) == 1:
            return f"'{options[0]}'"
        return "one of " + ", ".join(f"'{option}'" for option in options)
    if kind == "none_required":
        return "null"
    return ""


def _is_list(annotation: Any) -> bool:
    """``list[...]``, also inside ``Optional``."""
    origins = (typing.get_origin(annotation), *map(typing.get_origin, typing.get_args(annotation)))
    return list in origins


def _key_hint(key: Any, holder: type[BaseModel] | None) -> str:
    """Where ``key`` belongs: under a block of ``holder`` (``diffusion.noise_schedule``), ftcore's
    name for another tool's key, else the closest of ``holder``'s keys."""
    candidates = holder.model_fields if holder is not None else {}
    homes = [
        (name, field.annotation)
        for name, field in candidates.items()
        if (block := _nested_model(field.annotation)) is not None and key in block.model_fields
    ]
    entries = [name for name, annotation in homes if _is_list(annotation)]
    if homes and len(entries) == len(homes):  # datasets and test_datasets alike
        return f" (it is a key of each {' or '.join(entries)} entry)"
    if len(homes) == 1:  # in blocks of different kinds (temperature), none is the obvious one
        return f" (did you mean '{homes[0][0]}.{key}'?)"
    known = OTHER_TOOLS_KEYS.get(key)
    if known is not None and known.split(":")[0] in candidates:
        return f" (did you mean '{known}'?)"
    return suggest(key, candidates)


def _describe(errors: list[dict[str, Any]], holder: type[BaseModel] | None, key: Any) -> str:
    first = errors[0]
    kind = first["type"]
    given = first.get("input")
    if isinstance(key, str) and is_secret_key(key):
        given = _Masked()
    if kind == "extra_forbidden":
        return "unknown key" + _key_hint(key, holder)
    if kind == "missing":
        return "required key is missing"
    expected = [text for text in (_expected(error) for error in errors) if text]
    if expected and len(expected) == len(errors):
        message = f"expected {' or '.join(dict.fromkeys(expected))}, got {given!r}"
        if any(error["type"] == "literal_error" for error in errors) and isinstance(given, str):
            options = [
                option
                for error in errors
                for option in re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
            ]
            message += suggest(given, options)
        return message
    # Constraint and custom errors: pydantic's sentence, reworded to read as a rule.
    text = first["msg"]
    if kind == "value_error":
        text = text.removeprefix("Value error, ")
        return text
    if kind.startswith("ftcore_"):
        return text
    text = text.replace("Input should be", "must be").replace("Input ", "value ")
    return f"{text}, got {given!r}"


class _Masked:
    """Stands for a secret value in a message."""

    def __repr__(self) -> str:
        return "a value that is not shown (secret)"


def problems_from_validation(error: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """One :class:`Problem` per config path, union alternatives merged."""
    grouped: dict[str, tuple[list[dict[str, Any]], type[BaseModel] | None, Any]] = {}
    for item in error.errors():
        path, holder = _walk(model, item["loc"])
        key = path[-1] if path else ""
        text = format_path(path)
        grouped.setdefault(text, ([], holder, key))[0].append(item)
    return [
        Problem(path, _describe(errors, holder, key))
        for path, (errors, holder, key) in grouped.items()
    ]
