"""The plugin host: a typed facade over pluggy, so pipeline code never touches ``pm.hook``.

Each method calls one hook and applies its combination rule (see :mod:`ftcore.hookspecs`). Hooks run
in ``plugins:`` order; the host registers plugins in reverse because pluggy calls the most recently
registered implementation first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from ftcore import hookspecs
from ftcore.discovery import (
    InstalledPlugin,
    LoadedPlugin,
    PluginLoadError,
    blocked_names,
    installed_plugins,
    load_installed,
)
from ftcore.errors import ConfigError, FtcoreError, Problem
from ftcore.suggest import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from ftcore.claims import Claim
    from ftcore.config import FtcoreConfig

log = logging.getLogger("ftcore")

HOOK_NAMES = tuple(sorted(name for name in vars(hookspecs) if name.startswith("ftcore_")))


Observer = Callable[[str, dict[str, Any]], None]

# Observers attached to every host created from now on (the testing kit's hook recorder).
_observers_of_new_hosts: list[Observer] = []


def observe_new_hosts(observer: Observer) -> Callable[[], None]:
    """Attach ``observer`` to every :class:`PluginHost` created from now on; returns an undo."""
    _observers_of_new_hosts.append(observer)
    return lambda: _observers_of_new_hosts.remove(observer)


class PluginError(FtcoreError):
    """Plugins disagree at run time (two answered an at-most-one hook, two set one argument)."""


def _hook_problems(plugin: LoadedPlugin) -> list[str]:
    """``@hookimpl`` functions whose name matches no spec (a typo pluggy would only see later)."""
    problems = []
    for attr in dir(plugin.obj):
        marked = getattr(getattr(plugin.obj, attr, None), "ftcore_impl", None) is not None
        if marked and attr not in HOOK_NAMES:
            hint = did_you_mean(attr, HOOK_NAMES)
            problems.append(f"plugin '{plugin.name}' implements unknown hook '{attr}'{hint}")
    return problems


class PluginHost:
    """The active plugins of one run and typed access to their hooks."""

    def __init__(self, plugins: Iterable[LoadedPlugin] = ()):
        self.plugins: list[LoadedPlugin] = list(plugins)
        self._observers: list[Observer] = list(_observers_of_new_hosts)
        self.pm = pluggy.PluginManager("ftcore")
        self.pm.add_hookspecs(hookspecs)
        problems: list[Problem] = []
        for plugin in reversed(self.plugins):
            messages = _hook_problems(plugin)
            if not messages:
                try:
                    self.pm.register(plugin.obj, name=plugin.name)
                except pluggy.PluginValidationError as exc:
                    messages = [f"plugin '{plugin.name}': {exc}"]
            problems.extend(Problem("plugins", message) for message in messages)
        if problems:
            raise ConfigError(list(reversed(problems)))

    @property
    def names(self) -> list[str]:
        return [plugin.name for plugin in self.plugins]

    def hooks_of(self, plugin_name: str) -> list[str]:
        """Names of the hooks a registered plugin implements."""
        obj = self.pm.get_plugin(plugin_name)
        return sorted(
            caller.name
            for caller in (self.pm.get_hookcallers(obj) or [])
            if caller.name in HOOK_NAMES
        )

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(hook name, kwargs)`` before every hook call (see ``HookRecorder``)."""
        self._observers.append(observer)

    # ----------------------------------------------------------------------------- internals

    def _notify(self, name: str, kwargs: dict[str, Any]) -> None:
        for observer in self._observers:
            observer(name, kwargs)

    # The hook name is positional-only: hooks may take an argument called ``name`` themselves.

    def _each(self, hook: str, /, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook`` in ``plugins:`` order.

        Returns ``(plugin name, result)`` for each non-None result, so rules that need to know
        who answered (conflicts, at-most-one) can name the plugins.
        """
        self._notify(hook, kwargs)
        caller = getattr(self.pm.hook, hook)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def _at_most_one(self, hook: str, what: str, /, **kwargs: Any) -> Any:
        results = self._each(hook, **kwargs)
        if len(results) > 1:
            owners = " and ".join(f"'{plugin}'" for plugin, _ in results)
            raise PluginError(f"plugins {owners} both provide {what}; keep one of them in plugins")
        return results[0][1] if results else None

    def _call_all(self, hook: str, /, **kwargs: Any) -> None:
        self._notify(hook, kwargs)
        getattr(self.pm.hook, hook)(**kwargs)

    def _first(self, hook: str, /, **kwargs: Any) -> Any:
        self._notify(hook, kwargs)
        return getattr(self.pm.hook, hook)(**kwargs)

    # -------------------------------------------------------------------------------- config

    def config_schemas(self) -> list[tuple[str, Any]]:
        """``(plugin, pydantic model)`` for every plugin that adds config keys."""
        return self._each("ftcore_config_schema")

    def validate_config(self, cfg: FtcoreConfig) -> list[Problem]:
        problems = []
        for plugin, found in self._each("ftcore_validate_config", cfg=cfg):
            for item in found:
                if isinstance(item, tuple):
                    problems.append(Problem(item[0], item[1]))
                else:
                    problems.append(Problem("", f"{item} (plugin '{plugin}')"))
        return problems

    def configure(self, cfg: FtcoreConfig) -> None:
        self._call_all("ftcore_configure", cfg=cfg)

    def model_claims(self, cfg: FtcoreConfig) -> list[tuple[str, Claim]]:
        from ftcore.claims import Claim

        found = []
        for plugin, claims in self._each("ftcore_model_claims", cfg=cfg):
            for claim in claims:
                if not isinstance(claim, Claim):
                    raise PluginError(
                        f"plugin '{plugin}' returned {claim!r} from ftcore_model_claims; "
                        "return ftcore.claims.Claim objects"
                    )
                found.append((plugin, claim))
        return found

    # ----------------------------------------------------------------------------------- cli

    def cli_commands(self) -> list[tuple[str, str, Any]]:
        """``(plugin, command name, command or import path)`` for every contributed command."""
        return [
            (plugin, command, target)
            for plugin, commands in self._each("ftcore_cli_commands")
            for command, target in commands.items()
        ]

    # ---------------------------------------------------------------------------------- data

    def dataset_strategies(self) -> list[tuple[str, str, Any]]:
        """``(plugin, type name, strategy)`` for every contributed dataset type."""
        return [
            (plugin, type_name, strategy)
            for plugin, strategies in self._each("ftcore_dataset_strategies")
            for type_name, strategy in strategies.items()
        ]

    def load_datasets(self, cfg: FtcoreConfig, tokenizer: Any) -> Any:
        return self._at_most_one(
            "ftcore_load_datasets", "the datasets", cfg=cfg, tokenizer=tokenizer
        )

    def data_collator(self, cfg: FtcoreConfig, tokenizer: Any, is_eval: bool) -> Any:
        return self._first("ftcore_data_collator", cfg=cfg, tokenizer=tokenizer, is_eval=is_eval)

    # --------------------------------------------------------------------------------- model

    def pre_model_load(self, cfg: FtcoreConfig) -> None:
        self._call_all("ftcore_pre_model_load", cfg=cfg)

    def post_model_build(self, cfg: FtcoreConfig, model: Any) -> None:
        self._call_all("ftcore_post_model_build", cfg=cfg, model=model)

    def pre_adapter_load(self, cfg: FtcoreConfig, model: Any) -> None:
        self._call_all("ftcore_pre_adapter_load", cfg=cfg, model=model)

    def post_adapter_load(self, cfg: FtcoreConfig, model: Any) -> None:
        self._call_all("ftcore_post_adapter_load", cfg=cfg, model=model)

    def post_model_load(self, cfg: FtcoreConfig, model: Any, tokenizer: Any) -> None:
        self._call_all("ftcore_post_model_load", cfg=cfg, model=model, tokenizer=tokenizer)

    # ------------------------------------------------------------------------------- trainer

    def trainer_class(self, cfg: FtcoreConfig) -> type | None:
        return self._at_most_one("ftcore_trainer_class", "the trainer class", cfg=cfg)

    def training_args(self, cfg: FtcoreConfig) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for plugin, args in self._each("ftcore_training_args", cfg=cfg):
            for key, value in args.items():
                if key in merged and merged[key] != value:
                    raise PluginError(
                        f"plugins '{owner[key]}' and '{plugin}' set training argument '{key}' "
                        f"to different values ({merged[key]!r} and {value!r})"
                    )
                merged[key] = value
                owner[key] = plugin
        return merged

    def compute_loss(self, cfg: FtcoreConfig, model: Any, inputs: Any, trainer: Any) -> Any:
        return self._first(
            "ftcore_compute_loss", cfg=cfg, model=model, inputs=inputs, trainer=trainer
        )

    def create_optimizer(self, cfg: FtcoreConfig, model: Any, trainer: Any) -> Any:
        return self._first("ftcore_create_optimizer", cfg=cfg, model=model, trainer=trainer)

    def create_lr_scheduler(
        self, cfg: FtcoreConfig, trainer: Any, optimizer: Any, num_training_steps: int
    ) -> Any:
        return self._first(
            "ftcore_create_lr_scheduler",
            cfg=cfg,
            trainer=trainer,
            optimizer=optimizer,
            num_training_steps=num_training_steps,
        )

    def callbacks(self, cfg: FtcoreConfig, model: Any) -> list[Any]:
        return _flatten(self._each("ftcore_callbacks", cfg=cfg, model=model))

    def post_trainer_create(self, cfg: FtcoreConfig, trainer: Any) -> None:
        self._call_all("ftcore_post_trainer_create", cfg=cfg, trainer=trainer)

    # ------------------------------------------------------------------------------------ rl

    def reward_functions(self, cfg: FtcoreConfig) -> list[Callable[..., Any]]:
        return _flatten(self._each("ftcore_reward_functions", cfg=cfg))

    def on_rollouts(
        self,
        cfg: FtcoreConfig,
        trainer: Any,
        prompts: list[Any],
        completions: list[Any],
        rewards: dict[str, list[float]],
        advantages: Any,
    ) -> None:
        self._call_all(
            "ftcore_on_rollouts",
            cfg=cfg,
            trainer=trainer,
            prompts=prompts,
            completions=completions,
            rewards=rewards,
            advantages=advantages,
        )

    def log_samples(self, cfg: FtcoreConfig, trainer: Any, name: str, rows: list[dict]) -> None:
        self._call_all("ftcore_log_samples", cfg=cfg, trainer=trainer, name=name, rows=rows)

    # ----------------------------------------------------------------------------------- end

    def save_model(self, cfg: FtcoreConfig, trainer: Any, output_dir: str) -> bool:
        return bool(
            self._first("ftcore_save_model", cfg=cfg, trainer=trainer, output_dir=output_dir)
        )

    def post_train(self, cfg: FtcoreConfig, trainer: Any) -> None:
        self._call_all("ftcore_post_train", cfg=cfg, trainer=trainer)

    def on_train_error(self, cfg: FtcoreConfig, error: BaseException) -> None:
        """Tell every plugin the run failed; their own failures are logged, never raised."""
        self._notify("ftcore_on_train_error", {"cfg": cfg, "error": error})
        for impl in reversed(self.pm.hook.ftcore_on_train_error.get_hookimpls()):
            try:
                impl.function(*({"cfg": cfg, "error": error}[arg] for arg in impl.argnames))
            except Exception:
                log.exception(
                    "ftcore: plugin '%s' failed in ftcore_on_train_error", impl.plugin_name
                )

    def post_train_unload(self, cfg: FtcoreConfig) -> None:
        self._call_all("ftcore_post_train_unload", cfg=cfg)

    # ----------------------------------------------------------------------------- inference

    def inference_handler(self, cfg: FtcoreConfig, model: Any, tokenizer: Any) -> Any:
        return self._first("ftcore_inference_handler", cfg=cfg, model=model, tokenizer=tokenizer)


@dataclass
class InstalledState:
    """An installed plugin, imported on its own (unless blocked or ambiguous)."""

    name: str
    candidates: list[InstalledPlugin]
    status: str  # "installed", "blocked" or "error"
    host: PluginHost | None = None
    error: str | None = None


def survey_installed() -> list[InstalledState]:
    """Every installed plugin with a host of its own, for listings and plugin commands."""
    blocked = blocked_names()
    states = []
    for name, candidates in installed_plugins().items():
        state = InstalledState(name, candidates, "installed")
        if name in blocked:
            state.status = "blocked"
        elif len(candidates) > 1:
            state.status = "error"
            state.error = "provided by several distributions; uninstall all but one"
        else:
            try:
                state.host = PluginHost([load_installed(candidates[0])])
            except (PluginLoadError, FtcoreError) as exc:
                state.status, state.error = "error", str(exc)
        states.append(state)
    return states


def _flatten(results: list[tuple[str, list[Any]]]) -> list[Any]:
    return [item for _, items in results for item in items]
