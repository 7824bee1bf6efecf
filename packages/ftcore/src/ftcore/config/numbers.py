"""Refuse ``true``/``false`` where the config wants a number.

pydantic reads a YAML boolean as ``1``/``0`` (or ``1.0``/``0.0``) for a number field, so
``learning_rate: true`` would train at a learning rate of 1 without a word.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from ftcore.config.messages import format_path
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


def _models_in(annotation: Any, container: type) -> list[type[BaseModel]]:
    """Models a value of ``container`` type (dict for a block, list for entries) is read as."""
    found = []
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if container is dict and isinstance(member, type) and issubclass(member, BaseModel):
            found.append(member)
        elif container is list and origin is list:
            (item,) = typing.get_args(member) or (Any,)
            found += [m for m in _members(item) if isinstance(m, type) and issubclass(m, BaseModel)]
    return found


def booleans_for_numbers(
    data: dict[str, Any], model: type[BaseModel], path: tuple[str | int, ...] = ()
) -> list[Problem]:
    """A problem for each ``true``/``false`` given to a number field of ``model``, nested blocks
    and list entries included."""
    problems = []
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue  # unknown keys are pydantic's to report
        where = (*path, key)
        if isinstance(value, bool) and (kind := _number_kind(field.annotation)):
            message = f"expected {kind}, got {str(value).lower()}"
            if not field.is_required() and field.default is not None:
                message += f" (the default is {field.default!r})"
            problems.append(Problem(format_path(where), message))
        elif isinstance(value, dict):
            for block in _models_in(field.annotation, dict)[:1]:
                problems += booleans_for_numbers(value, block, where)
        elif isinstance(value, list):
            for entry_model in _models_in(field.annotation, list)[:1]:
                for index, entry in enumerate(value):
                    if isinstance(entry, dict):
                        problems += booleans_for_numbers(entry, entry_model, (*where, index))
    return problems
