"""Which installed plugin, not listed in ``plugins:``, adds a key the config uses.

Only asked on the error path: an unknown top-level key that belongs to an installed plugin is
almost always a plugin the user forgot to list (``liger_rms_norm: true`` without ``liger``).
"""

from __future__ import annotations

from ftcore.discovery import blocked_names, installed_plugins, load_installed
from ftcore.errors import Problem


def keys_of_unlisted_plugins(active: set[str]) -> dict[str, str]:
    """``key -> plugin name`` for the config keys of installed plugins not in ``active``."""
    owners: dict[str, str] = {}
    for name, claims in installed_plugins().items():
        if name in active or name in blocked_names() or len(claims) != 1:
            continue
        try:
            plugin = load_installed(claims[0]).obj
            schema = plugin.ftcore_config_schema()
        except Exception:  # a plugin that cannot tell: no hint from it
            continue
        for key in getattr(schema, "model_fields", {}):
            owners.setdefault(key, name)
    return owners


def name_unlisted_owners(problems: list[Problem], active: set[str]) -> list[Problem]:
    """``problems`` with each unknown top-level key of an installed plugin named as that
    plugin's, and how to turn it on."""
    unknown = [p for p in problems if p.message.startswith("unknown key") and p.path.isidentifier()]
    if not unknown:
        return problems
    owners = keys_of_unlisted_plugins(active)
    named: dict[int, Problem] = {}
    for problem in unknown:
        if problem.path in owners:
            plugin = owners[problem.path]
            named[id(problem)] = Problem(
                problem.path,
                f"unknown key: it belongs to the installed plugin '{plugin}', which is not "
                f"active; add {plugin} to plugins",
            )
    return [named.get(id(problem), problem) for problem in problems]
