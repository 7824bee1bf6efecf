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
    skipped = active | blocked_names()
    for name, claims in installed_plugins().items():
        if name in skipped or len(claims) != 1:
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
    if not any(_is_unknown_key(problem) for problem in problems):
        return problems
    owners = keys_of_unlisted_plugins(active)
    return [
        Problem(
            problem.path,
            f"unknown key: it belongs to the installed plugin '{owners[problem.path]}', which is "
            f"not active; add {owners[problem.path]} to plugins",
        )
        if _is_unknown_key(problem) and problem.path in owners
        else problem
        for problem in problems
    ]


def _is_unknown_key(problem: Problem) -> bool:
    return problem.message.startswith("unknown key") and problem.path.isidentifier()
