"""Compose the core schema with the active plugins' schemas, without ``exec``."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from ftcore.config.schema import CoreConfig, field_names
from ftcore.errors import Problem


class _ForbidExtra(BaseModel):
    # Last base of every composed config, so its settings win over a plugin model's.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def compose_schema(
    plugin_schemas: list[tuple[str, Any]],
) -> tuple[type[CoreConfig], dict[str, str], list[Problem]]:
    """Build the config model of a run.

    :param plugin_schemas: ``(plugin name, pydantic model)`` from ``ftcore_config_schema``.
    :return: the composed model (a :class:`CoreConfig` subclass), which plugin owns each key
        (``"core"`` for core keys), and a problem per key defined twice or per bad schema.
    """
    owners = {key: "core" for key in field_names(CoreConfig)}
    bases: list[type[BaseModel]] = []
    problems: list[Problem] = []
    for plugin, model in plugin_schemas:
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            problems.append(
                Problem(
                    "plugins",
                    f"plugin '{plugin}' returned {model!r} from ftcore_config_schema; "
                    "expected a pydantic model class",
                )
            )
            continue
        clashes = False
        for key in sorted(field_names(model)):
            owner = owners.get(key)
            if owner is None:
                owners[key] = plugin
                continue
            clashes = True
            first = "the core" if owner == "core" else f"plugin '{owner}'"
            problems.append(
                Problem(
                    key,
                    f"defined by both {first} and plugin '{plugin}'; "
                    "only one of them can own a key: deactivate one of them",
                )
            )
        if not clashes:
            bases.append(model)
    if not bases:
        return CoreConfig, owners, problems
    composed = create_model("FtcoreConfig", __base__=(CoreConfig, *bases, _ForbidExtra))
    composed.__doc__ = "The core config composed with the keys of the active plugins."
    return composed, owners, problems
