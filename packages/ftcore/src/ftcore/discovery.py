"""Finding plugins: installed entry points, local dotted paths and Axolotl aliases.

Installed is not active: this module only finds and imports plugins. Which ones run is decided by
the config's ``plugins:`` list (see :func:`load_plugins`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from ftcore.aliases import install_hint, is_axolotl_path, normalize_name, resolve_alias
from ftcore.errors import Problem
from ftcore.suggest import did_you_mean

ENTRY_POINT_GROUP = "ftcore"
DISABLE_ENV = "FTCORE_DISABLE_PLUGINS"

log = logging.getLogger("ftcore")


@dataclass(frozen=True)
class InstalledPlugin:
    """An entry point in group ``ftcore`` and the distribution that declares it."""

    name: str
    value: str
    distribution: str
    version: str
    entry_point: metadata.EntryPoint = field(compare=False, repr=False)


@dataclass
class LoadedPlugin:
    """A plugin imported and ready to register."""

    name: str
    obj: Any
    distribution: str | None = None
    version: str | None = None


class PluginLoadError(Exception):
    """A ``plugins:`` entry that cannot be loaded; carries the user-facing message."""


def blocked_names() -> set[str]:
    """Names listed in ``FTCORE_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {normalize_name(part) for part in raw.split(",") if part.strip()}


def installed_plugins() -> dict[str, list[InstalledPlugin]]:
    """Every entry point of group ``ftcore``, by normalized name.

    A name maps to more than one :class:`InstalledPlugin` when two distributions claim it.
    """
    found: dict[str, list[InstalledPlugin]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        plugin = InstalledPlugin(
            name=normalize_name(ep.name),
            value=ep.value,
            distribution=dist.name if dist else "?",
            version=dist.version if dist else "?",
            entry_point=ep,
        )
        claims = found.setdefault(plugin.name, [])
        if all(other.distribution != plugin.distribution for other in claims):
            claims.append(plugin)
    return dict(sorted(found.items()))


def instantiate(obj: Any) -> Any:
    """A plugin may be a module, an instance, or a class that takes no arguments."""
    return obj() if inspect.isclass(obj) else obj


def describe_import_failure(exc: BaseException) -> str:
    """``ExcType: message`` plus the place it was raised, for import-failure messages."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    own = os.path.dirname(__file__)
    user_frames = [
        f for f in frames if "importlib" not in f.filename and not f.filename.startswith(own)
    ]
    if user_frames:
        last = user_frames[-1]
        text += f"\n(raised at {last.filename}:{last.lineno})"
    return text


def load_installed(plugin: InstalledPlugin) -> LoadedPlugin:
    """Import an installed plugin through its entry point."""
    try:
        obj = plugin.entry_point.load()
    except Exception as exc:  # any failure of a plugin's import is the user's to see
        raise PluginLoadError(
            f"plugin '{plugin.name}' ({plugin.distribution} {plugin.version}) failed to import: "
            f"{describe_import_failure(exc)}"
        ) from exc
    return LoadedPlugin(
        name=plugin.name,
        obj=instantiate(obj),
        distribution=plugin.distribution,
        version=plugin.version,
    )


def load_local(path: str) -> LoadedPlugin:
    """Import an unpublished plugin from ``pkg.module``, ``pkg.module:Attr`` or ``pkg.module.Attr``.

    Modules are found on ``sys.path`` and, after it, in the current directory (as ``python -m``
    would), so a plugin can sit next to the config that lists it.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    module_name, _, attr = path.partition(":")
    try:
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # ``pkg.module.Attr``: the last part may be an attribute rather than a module.
            parent, _, last = module_name.rpartition(".")
            if attr or not parent or exc.name != module_name:
                raise
            obj = importlib.import_module(parent)
            attr = last
        if attr:
            obj = getattr(obj, attr)
    except Exception as exc:
        raise PluginLoadError(
            f"plugin '{path}' failed to import: {describe_import_failure(exc)}"
        ) from exc
    version = getattr(obj, "__version__", None)
    return LoadedPlugin(name=path, obj=instantiate(obj), version=version)


def looks_like_path(entry: str) -> bool:
    return "." in entry or ":" in entry


def resolve_entry(
    entry: str, installed: dict[str, list[InstalledPlugin]], blocked: set[str]
) -> LoadedPlugin:
    """Load one ``plugins:`` entry or raise :class:`PluginLoadError` with the message to show."""
    alias = resolve_alias(entry)
    if alias is not None:
        log.warning(
            "ftcore: '%s' is the Axolotl name of plugin '%s'; using '%s' "
            "(write '%s' in plugins to silence this notice)",
            entry,
            alias,
            alias,
            alias,
        )
        entry = alias
    elif is_axolotl_path(entry):
        raise PluginLoadError(
            f"plugin '{entry}' is an Axolotl integration that ftcore does not provide; "
            "remove it from plugins"
        )

    if looks_like_path(entry):
        if normalize_name(entry) in blocked:
            raise PluginLoadError(_blocked_message(entry))
        return load_local(entry)

    name = normalize_name(entry)
    if name in blocked:
        raise PluginLoadError(_blocked_message(name))
    candidates = installed.get(name)
    if not candidates:
        hint = did_you_mean(name, installed)
        raise PluginLoadError(f"plugin '{name}' is not installed; {install_hint(name)}{hint}")
    if len(candidates) > 1:
        owners = ", ".join(f"{c.distribution} {c.version}" for c in candidates)
        raise PluginLoadError(
            f"plugin '{name}' is provided by {len(candidates)} installed distributions ({owners}); "
            "uninstall all but one of them"
        )
    return load_installed(candidates[0])


def _blocked_message(name: str) -> str:
    return (
        f"plugin '{name}' is blocked by {DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')}; "
        f"unset it or remove '{name}' from plugins"
    )


def load_plugins(entries: list[str]) -> tuple[list[LoadedPlugin], list[Problem]]:
    """Load every ``plugins:`` entry; return the plugins loaded and a problem per entry that failed."""
    installed = installed_plugins()
    blocked = blocked_names()
    loaded: list[LoadedPlugin] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        try:
            plugin = resolve_entry(str(entry), installed, blocked)
        except PluginLoadError as exc:
            problems.append(Problem(f"plugins[{index}]", str(exc)))
            continue
        if plugin.name in seen:
            problems.append(Problem(f"plugins[{index}]", f"plugin '{plugin.name}' is listed twice"))
            continue
        seen.add(plugin.name)
        loaded.append(plugin)
    return loaded, problems
