"""Load a run's config: YAML -> overrides -> plugins -> composed schema -> validated config.

Every problem is collected and raised as one :class:`ftcore.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ftcore.claims import find_claim_conflicts
from ftcore.config.checks import core_problems, run_problems
from ftcore.config.compose import compose_schema
from ftcore.config.messages import problems_from_validation
from ftcore.config.numbers import find_booleans_for_numbers
from ftcore.config.overrides import apply_overrides, parse_override_args
from ftcore.config.owners import name_unlisted_owners
from ftcore.config.redact import redact
from ftcore.config.schema import BUILTIN_DATASET_TYPES, RL_DATASET_TYPES, CoreConfig
from ftcore.discovery import load_plugins
from ftcore.errors import ConfigError, FtcoreError, Problem
from ftcore.host import PluginHost


@dataclass
class LoadedConfig:
    """A validated config and the plugin host of its active plugins."""

    cfg: CoreConfig
    host: PluginHost
    source: str
    key_owners: dict[str, str]

    def redacted(self) -> dict[str, Any]:
        """The resolved config (defaults filled in) with secrets masked, ready to print or save."""
        return redact(self.cfg.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.redacted(), sort_keys=False, allow_unicode=True)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML keeps the
    last one without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a mapping, with a clear error for a missing file or bad YAML."""
    path = Path(path)
    if path.is_dir():
        raise FtcoreError(f"{path} is a folder; give the config's YAML file")
    if not path.is_file():
        raise FtcoreError(
            f"config file not found: {path}"
            + ("" if path.parent.is_dir() else f" (folder {path.parent} does not exist either)")
        )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except UnicodeDecodeError as exc:
        raise FtcoreError(
            f"config error in {path}\n  not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}); save the file as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise FtcoreError(f"config error in {path}\n  not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FtcoreError(
            f"config error in {path}\n  the file must hold a mapping of keys, "
            f"found {type(data).__name__}"
        )
    return data


def plugin_entries(raw: dict[str, Any], label: str) -> list[str]:
    """The ``plugins:`` list of a raw config, checked to be a list."""
    entries = raw.get("plugins") or []
    if not isinstance(entries, list):
        raise ConfigError([Problem("plugins", f"expected a list, got {entries!r}")], label)
    return [str(entry) for entry in entries]


def dataset_types(host: PluginHost) -> tuple[set[str], list[Problem]]:
    """Names usable as ``datasets[].type``: the core's and those plugins add."""
    owners = {name: "core" for name in (*BUILTIN_DATASET_TYPES, *RL_DATASET_TYPES)}
    problems = []
    for plugin, name, _strategy in host.dataset_strategies():
        if name in owners:
            first = "the core" if owners[name] == "core" else f"plugin '{owners[name]}'"
            problems.append(
                Problem(
                    "plugins",
                    f"dataset type '{name}' is defined by both {first} and plugin '{plugin}'",
                )
            )
        else:
            owners[name] = plugin
    return set(owners), problems


def _by_position(raw: dict[str, Any]):
    """Sort key: problems in the order their top-level keys appear in the file."""
    order = {key: index for index, key in enumerate(raw)}

    def key(problem: Problem) -> int:
        top = problem.path.split(".")[0].split("[")[0]
        return order.get(top, len(order))

    return key


def load_config(
    source: str | Path | dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    for_run: bool = False,
) -> LoadedConfig:
    """Load, activate plugins, validate and configure. Raises :class:`ConfigError` with every problem.

    :param source: a YAML file, or an already-read mapping.
    :param overrides: CLI words such as ``learning_rate=1e-4`` or ``--micro-batch-size 4``.
    :param for_run: also require what a run needs (``base_model``, ``datasets``, usable folders).
    """
    if isinstance(source, dict):
        raw, label = dict(source), "<config>"
    else:
        raw, label = read_yaml(source), str(source)

    pairs = parse_override_args(list(overrides))
    plugin_overrides = [pair for pair in pairs if pair[0].split(".")[0] == "plugins"]
    apply_overrides(raw, plugin_overrides, CoreConfig)

    plugins, problems = load_plugins(plugin_entries(raw, label))
    if problems:
        raise ConfigError(
            problems, label, note="fix the plugins first; other keys were not checked"
        )
    try:
        host = PluginHost(plugins)
    except ConfigError as exc:
        raise ConfigError(exc.problems, label) from None

    model, owners, problems = compose_schema(host.config_schemas())
    types_known, type_problems = dataset_types(host)
    problems += type_problems
    apply_overrides(raw, [pair for pair in pairs if pair not in plugin_overrides], model)
    booleans = find_booleans_for_numbers(raw, model)

    try:
        cfg = model.model_validate(raw, context={"dataset_types": types_known})
    except ValidationError as exc:
        taken = {problem.path for problem in booleans}
        found = [p for p in problems_from_validation(exc, model) if p.path not in taken]
        found = sorted(booleans + found, key=_by_position(raw))
        found = name_unlisted_owners(found, {plugin.name for plugin in plugins})
        raise ConfigError(problems + found, label) from None
    if problems or booleans:
        raise ConfigError(problems + booleans, label)

    problems = (run_problems(cfg) if for_run else []) + core_problems(cfg)
    problems += host.validate_config(cfg)
    problems += [
        Problem(path, message) for path, message in find_claim_conflicts(host.model_claims(cfg))
    ]
    if problems:
        raise ConfigError(problems, label)

    host.configure(cfg)
    return LoadedConfig(cfg=cfg, host=host, source=label, key_owners=owners)
