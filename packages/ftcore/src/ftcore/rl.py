"""Preference and RL training through TRL: DPO, KTO, ORPO and GRPO.

``rl:`` picks the trainer; everything else (config, datasets, model, LoRA, plugin hooks, saving) is
the pipeline of supervised training. This module maps the ``trl:`` block onto TRL's config class,
resolves and guards reward functions, checks a vLLM server before training, and reports scored
rollouts to the ``ftcore_on_rollouts`` hook.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import logging
import math
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError
from ftcore.suggest import did_you_mean

log = logging.getLogger("ftcore")

#: ``rl`` value -> (module, trainer class, config class) in TRL.
TRAINERS = {
    "dpo": ("trl", "DPOTrainer", "DPOConfig"),
    "kto": ("trl", "KTOTrainer", "KTOConfig"),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
    "grpo": ("trl", "GRPOTrainer", "GRPOConfig"),
}


def trl_classes(method: str) -> tuple[type, type]:
    module_name, trainer_name, config_name = TRAINERS[method]
    module = importlib.import_module(module_name)
    return getattr(module, trainer_name), getattr(module, config_name)


def documented_losses(config_class: type) -> list[str] | None:
    """The loss names TRL's config class gives for ``loss_type`` (its ``choices``, else the quoted
    names of its help's "... values are ..." sentence; empty when it names none, and nothing is
    checked then), or ``None`` when it has no such field."""
    field = getattr(config_class, "__dataclass_fields__", {}).get("loss_type")
    if field is None:
        return None
    if field.metadata.get("choices"):
        return list(field.metadata["choices"])
    sentence = re.search(r"values are:?(.*?)\.(?:\s|$)", field.metadata.get("help", ""), re.S)
    return re.findall(r"'([a-z][a-z0-9_]*)'", sentence.group(1)) if sentence else []


def _check_loss_type(cfg: Any) -> None:
    wanted = cfg.trl.loss_type
    if wanted is None:
        return
    names = documented_losses(trl_classes(cfg.rl)[1])
    if names is None:
        raise FtcoreError(
            f"trl.loss_type: TRL's {cfg.rl.upper()} trainer has no loss variants; remove the key"
        )
    if names and wanted not in names:
        raise FtcoreError(
            f"trl.loss_type: '{wanted}' is not a loss of TRL's {cfg.rl.upper()} trainer"
            f"{did_you_mean(wanted, names)}; choose from {', '.join(names)}"
        )


def check_rl(cfg: Any, host: Any) -> list[Any]:
    """What TRL would find only after the model has loaded, or at the first step, checked first:
    ``trl.loss_type``; for GRPO the reward functions (returned, guarded) and one weight per
    function. (The vLLM server is checked later, when the trainer is built: it may still be
    starting.)"""
    _check_loss_type(cfg)
    if cfg.rl != "grpo":
        return []
    rewards = reward_functions(cfg, host)
    _check_weights(cfg.trl.reward_weights, len(rewards))
    return rewards


def trl_values(cfg: Any) -> dict[str, Any]:
    """The TRL config fields the ``trl:`` block and the core keys set for ``cfg.rl`` (checked by
    :func:`check_rl` first)."""
    trl = cfg.trl
    values: dict[str, Any] = {"beta": trl.beta, "loss_type": trl.loss_type}
    if cfg.rl in ("dpo", "kto", "orpo"):
        values["max_length"] = cfg.sequence_len
    if cfg.rl == "orpo":
        values["max_completion_length"] = trl.max_completion_length
    if cfg.rl == "grpo":
        values.update(
            num_generations=trl.num_generations,
            max_completion_length=trl.max_completion_length,
            temperature=trl.temperature,
            reward_weights=trl.reward_weights,
        )
        if trl.use_vllm:
            values.update(
                use_vllm=True,
                vllm_mode="server",
                vllm_server_host=trl.vllm_server_host,
                vllm_server_port=trl.vllm_server_port,
                vllm_server_timeout=trl.vllm_server_timeout,
            )
    values.update(trl.extra)
    return {key: value for key, value in values.items() if value is not None}


def _check_weights(weights: list[float] | None, count: int) -> None:
    if weights is not None and len(weights) != count:
        raise FtcoreError(
            f"trl.reward_weights has {len(weights)} weights for {count} reward functions "
            "(yours, then those plugins add); give one weight per function"
        )


# ------------------------------------------------------------------------------------------ rewards


def resolve_reward(name: str) -> Any:
    """A reward function from a file (``rewards.py:func``), a dotted path (``pkg.mod:func``,
    ``pkg.mod.func``) or TRL's built-in rewards (``accuracy_reward``)."""
    try:
        if ".py:" in name:
            found = _from_file(*name.rsplit(":", 1))
        elif ":" in name or "." in name:
            module_name, _, attr = name.replace(":", ".").rpartition(".")
            found = getattr(importlib.import_module(module_name), attr)
        else:
            import trl.rewards

            found = getattr(trl.rewards, name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise FtcoreError(
            f"trl.reward_funcs: cannot find reward function '{name}' ({exc}); give a file and "
            "name (rewards.py:exact_match), a dotted path (my_pkg.rewards:exact_match), or a TRL "
            "reward name"
        ) from None
    if not callable(found):
        raise FtcoreError(
            f"trl.reward_funcs: '{name}' is not a function (it is {type(found).__name__} "
            f"{found!r:.40})"
        )
    return found


def _from_file(path: str, attr: str) -> Any:
    import importlib.util

    if not Path(path).is_file():
        raise ImportError(f"no file {path}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a SyntaxError, or the module's own code failing
        raise ImportError(f"{path} does not import: {type(exc).__name__}: {exc}") from None
    return getattr(module, attr)


def _describe_row(kwargs: dict[str, Any], index: int) -> str:
    prompt = kwargs.get("prompts", [None] * (index + 1))[index]
    text = prompt if isinstance(prompt, str) else repr(prompt)
    return text if len(text) <= 80 else text[:77] + "..."


def guard_reward(func: Any, name: str) -> Any:
    """Wrap a reward function so a failure names the function and the row it failed on, and a
    return value TRL cannot use names the function. An async function stays async (TRL awaits
    those)."""

    def failed(exc: Exception, kwargs: dict[str, Any]) -> FtcoreError:
        index = None if is_async else _failing_row(func, kwargs)
        where = (
            f" on row {index} (prompt {_describe_row(kwargs, index)!r})"
            if index is not None
            else ""
        )
        return FtcoreError(f"reward function '{name}' failed{where}: {type(exc).__name__}: {exc}")

    def checked(rewards: Any, kwargs: dict[str, Any]) -> Any:
        if problem := _rewards_problem(rewards, len(kwargs.get("completions") or [])):
            raise FtcoreError(
                f"reward function '{name}' returned {problem}; it must return a list with one "
                "number (or None, to abstain) per completion"
            )
        return rewards

    is_async = inspect.iscoroutinefunction(func)
    if is_async:

        @functools.wraps(func)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                rewards = await func(*args, **kwargs)
            except Exception as exc:
                raise failed(exc, kwargs) from exc
            return checked(rewards, kwargs)

    else:

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                rewards = func(*args, **kwargs)
            except Exception as exc:
                raise failed(exc, kwargs) from exc
            return checked(rewards, kwargs)

    guarded.__name__ = getattr(func, "__name__", name)
    return guarded


def _rewards_problem(rewards: Any, count: int) -> str | None:
    """What is wrong with a reward function's return value for ``count`` completions."""
    if hasattr(rewards, "tolist") and getattr(rewards, "ndim", 1) == 1:  # numpy, torch: TRL's too
        rewards = rewards.tolist()
    if not isinstance(rewards, list | tuple):
        return f"a {type(rewards).__name__}, not a list"
    if len(rewards) != count:
        return f"{len(rewards)} rewards for {count} completions"
    for index, value in enumerate(rewards):
        if value is None:
            continue
        try:
            number = None if isinstance(value, str | bytes) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None:
            return f"{value!r} for completion {index}, not a number"
        if math.isinf(number):
            return f"{value} for completion {index}"
    return None


def _failing_row(func: Any, kwargs: dict[str, Any]) -> int | None:
    """Call ``func`` row by row to find the first row it fails on."""
    rows = len(kwargs.get("completions") or [])
    for index in range(rows):
        single = {
            key: [value[index]] if isinstance(value, list) and len(value) == rows else value
            for key, value in kwargs.items()
        }
        try:
            func(**single)
        except Exception:
            return index
    return None


def reward_functions(cfg: Any, host: Any) -> list[Any]:
    """The configured reward functions, then the other ones plugins contribute, each guarded.

    A name in ``trl.reward_funcs`` that a plugin's function carries picks that function (and fixes
    its place in the order, for ``reward_weights``).
    """
    contributed = {getattr(f, "__name__", repr(f)): f for f in host.reward_functions(cfg)}
    functions = [
        contributed.pop(name, None) or resolve_reward(name) for name in cfg.trl.reward_funcs
    ]
    functions += list(contributed.values())
    found = [guard_reward(func, getattr(func, "__name__", repr(func))) for func in functions]
    if not found:
        raise FtcoreError(
            "rl: grpo needs reward functions: list them in trl.reward_funcs, or activate a plugin "
            "that contributes some"
        )
    return found


# -------------------------------------------------------------------------------------------- vLLM


def check_vllm_server(cfg: Any) -> None:
    """Fail fast, with what to do, when the vLLM server of ``trl.use_vllm`` does not answer."""
    trl = cfg.trl
    url = f"http://{trl.vllm_server_host}:{trl.vllm_server_port}/health/"
    try:
        with urllib.request.urlopen(url, timeout=min(10.0, trl.vllm_server_timeout)) as response:
            if response.status == 200:
                return
            problem = f"answered HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        problem = f"cannot be reached ({getattr(exc, 'reason', exc)})"
    raise FtcoreError(
        f"trl.use_vllm: the vLLM server at {trl.vllm_server_host}:{trl.vllm_server_port} {problem}; "
        f"start it with `trl vllm-serve --model {cfg.base_model}`, fix vllm_server_host/port, or "
        "set trl.use_vllm: false to generate with transformers"
    )


# ---------------------------------------------------------------------------------------- rollouts


class RolloutHooksMixin:
    """Reports every scored GRPO batch to ``ftcore_on_rollouts`` on rank 0; failures are logged."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._ftcore_scored = (prompts, completions, rewards)
        return rewards

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        scored = getattr(self, "_ftcore_scored", None)
        if scored is not None and self.accelerator.is_main_process:
            prompts, completions, gathered = scored
            start = self.accelerator.process_index * len(prompts)
            local = gathered[start : start + len(prompts)]
            names = [getattr(f, "__name__", str(i)) for i, f in enumerate(self.reward_funcs)]
            rewards = {name: local[:, i].tolist() for i, name in enumerate(names)}
            try:
                self.ftcore_host.on_rollouts(
                    self.ftcore_cfg,
                    self,
                    prompts,
                    completions,
                    rewards,
                    output["advantages"].tolist(),
                )
            except Exception:
                log.exception("ftcore: a plugin's ftcore_on_rollouts failed; training goes on")
        return output


# ----------------------------------------------------------------------------------------- trainer


def _reference(cfg: Any, model: Any) -> Any:
    """A frozen copy of the starting model, where TRL needs a reference and LoRA cannot provide one."""
    if cfg.adapter:
        return None  # the adapter switched off is the reference
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


class _WithoutWeightAdvice(logging.Filter):
    """Drops TRL's advice on KTO's desirable/undesirable weights, which no weight can follow
    when every row carries one label."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "You have different amounts of desirable" not in record.getMessage()


def _one_kto_label(train_set: Any) -> contextlib.AbstractContextManager:
    """Warn, in ftcore's words, when every KTO row has the same label; the context it returns
    keeps TRL's weight advice for that case out of the log while the trainer is built."""
    labels = set(train_set["label"])
    if len(labels) != 1:
        return contextlib.nullcontext()
    (label,) = labels
    log.warning(
        "ftcore: all %d KTO training rows are labelled %s; KTO learns from desirable and "
        "undesirable completions together, so add rows labelled %s",
        len(train_set),
        "true (desirable)" if label else "false (undesirable)",
        "false" if label else "true",
    )
    return _filtered(logging.getLogger("trl.trainer.kto_trainer"), _WithoutWeightAdvice())


@contextlib.contextmanager
def _filtered(logger: logging.Logger, rule: logging.Filter) -> Any:
    logger.addFilter(rule)
    try:
        yield
    finally:
        logger.removeFilter(rule)


def build_rl_trainer(
    loaded: Any,
    model: Any,
    tokenizer: Any,
    train_set: Any,
    eval_set: Any,
    args_for: Any,
    rewards: list[Any],
) -> Any:
    """The TRL trainer of ``cfg.rl``, with ftcore's trainer mixin and hooks; ``rewards`` are
    :func:`check_rl`'s reward functions."""
    from ftcore.training.trainer import compose_trainer_class

    cfg, host = loaded.cfg, loaded.host
    base_trainer, config_class = trl_classes(cfg.rl)
    kwargs: dict[str, Any] = {
        "model": model,
        "train_dataset": train_set,
        "eval_dataset": eval_set,
        "processing_class": tokenizer,
        "callbacks": host.callbacks(cfg, model),
    }
    if cfg.rl == "grpo":
        kwargs["reward_funcs"] = rewards
        if cfg.trl.use_vllm:
            check_vllm_server(cfg)
        if (cfg.trl.beta or 0) > 0 and not cfg.adapter and cfg.model_init == "random":
            # TRL rebuilds GRPO's reference from the model's path; a random start has no weights
            # there, so rank 0 saves the starting weights for every rank to load.
            from accelerate import PartialState

            from ftcore.dist import has_accelerator, is_main_process

            reference_dir = Path(cfg.output_dir) / ".ftcore-reference"
            with PartialState(cpu=not has_accelerator()).main_process_first():
                if is_main_process():
                    model.save_pretrained(str(reference_dir))
            model.config._name_or_path = str(reference_dir)
    else:
        collator = host.data_collator(cfg, tokenizer, False)
        if collator is not None:
            kwargs["data_collator"] = collator
        if cfg.rl in ("dpo", "kto"):
            kwargs["ref_model"] = _reference(cfg, model)
    args = args_for(config_class, trl_values(cfg))
    chosen = host.trainer_class(cfg) or base_trainer
    trainer_class = compose_trainer_class(chosen)
    if cfg.rl == "grpo":
        trainer_class = type(trainer_class.__name__, (RolloutHooksMixin, trainer_class), {})
    with _one_kto_label(train_set) if cfg.rl == "kto" else contextlib.nullcontext():
        return trainer_class(args=args, **kwargs)
