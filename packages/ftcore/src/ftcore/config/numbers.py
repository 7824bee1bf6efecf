"""Refuse ``true``/``false`` where the config wants a number.

pydantic reads a YAML boolean as ``1``/``0`` (or ``1.0``/``0.0``) for a number field, so
``learning_rate: true`` would train at a learning rate of 1 without a word.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from ftcore.config.messages import _is_list, _nested_model, format_path
from ftcore.errors import Problem


def _members(annotation: Any) -> list[Any]:
    """The types a field accepts, through ``Annotated``, ``Optional`` and unions."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    return [annotation]


def _number_kind(annotation: Any) -> str | None:
    """``"an integer"`` or ``"a number"`` for a field that takes numbers but not booleans."""
    members = _members(annotation)
    if bool in members:
        return None
    if float in members:
        return "a number"
    return "an integer" if int in members else None


def _item_number_kind(annotation: Any) -> str | None:
    """:func:`_number_kind` of the items of a ``list[...]`` field."""
    for member in _members(annotation):
        if typing.get_origin(member) is list and (args := typing.get_args(member)):
            return _number_kind(args[0])
    return None


def _field(model: type[BaseModel], key: str) -> Any:
    """The field ``key`` sets: a block may take other spellings of its keys (``fsdp_config``
    takes Axolotl's ``fsdp_``-prefixed names), through a ``field_name`` class method."""
    rename = getattr(model, "field_name", None)
    return model.model_fields.get(rename(key) if callable(rename) else key)


def _problem(where: tuple[str | int, ...], kind: str, value: bool, field: Any) -> Problem:
    message = f"expected {kind}, got {str(value).lower()}"
    if field is not None and not field.is_required() and field.default is not None:
        message += f" (the default is {field.default!r})"
    return Problem(format_path(where), message)


def find_booleans_for_numbers(
    data: dict[str, Any], model: type[BaseModel], path: tuple[str | int, ...] = ()
) -> list[Problem]:
    """A problem for each ``true``/``false`` given to a number field of ``model`` (or to an item
    of a list of numbers), nested blocks and list entries included."""
    problems = []
    for key, value in data.items():
        field = _field(model, key) if isinstance(key, str) else None
        if field is None:
            continue  # unknown keys are pydantic's to report
        where = (*path, key)
        block, entries = _nested_model(field.annotation), _is_list(field.annotation)
        if isinstance(value, bool) and (kind := _number_kind(field.annotation)):
            problems.append(_problem(where, kind, value, field))
        elif isinstance(value, dict) and block and not entries:
            problems += find_booleans_for_numbers(value, block, where)
        elif isinstance(value, list):
            if kind := _item_number_kind(field.annotation):
                problems += [
                    _problem((*where, index), kind, item, None)
                    for index, item in enumerate(value)
                    if isinstance(item, bool)
                ]
            if block and entries:
                for index, entry in enumerate(value):
                    if isinstance(entry, dict):
                        problems += find_booleans_for_numbers(entry, block, (*where, index))
    return problems
