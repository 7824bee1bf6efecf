"""Cross-field checks of the core keys, run once every key passed its schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ftcore.config.names import OPTIMIZERS, SCHEDULERS, TRACKERS
from ftcore.config.schema import BUILTIN_DATASET_TYPES, RL_DATASET_TYPES
from ftcore.errors import Problem
from ftcore.locations import expand, is_local_data_path, is_local_path
from ftcore.suggest import did_you_mean
from ftcore.training.parallel import parallel_problems

_GRPO_ONLY = ("num_generations", "temperature", "reward_funcs", "reward_weights", "use_vllm")


def _dataset_problems(cfg: Any) -> list[Problem]:
    problems = []
    for key in ("datasets", "test_datasets"):
        for index, ds in enumerate(getattr(cfg, key)):
            if problem := _template_problem(f"{key}[{index}].chat_template", ds.chat_template):
                problems.append(problem)
            path = f"{key}[{index}].type"
            methods = RL_DATASET_TYPES.get(ds.type)
            if cfg.rl and ds.type in BUILTIN_DATASET_TYPES:
                wanted = ", ".join(t for t, m in RL_DATASET_TYPES.items() if cfg.rl in m)
                problems.append(
                    Problem(path, f"'{ds.type}' is a supervised type; rl: {cfg.rl} reads {wanted}")
                )
            elif methods and not cfg.rl:
                problems.append(
                    Problem(path, f"'{ds.type}' is a type for rl: {' or '.join(methods)}; set rl")
                )
            elif methods and cfg.rl not in methods:
                problems.append(
                    Problem(
                        path, f"'{ds.type}' is a type for rl: {' or '.join(methods)}, not {cfg.rl}"
                    )
                )
    return problems


def _trl_problems(cfg: Any) -> list[Problem]:
    trl = cfg.trl
    problems = []
    if cfg.rl != "grpo":
        for key in _GRPO_ONLY:
            value = getattr(trl, key)
            if value not in (None, False, []):
                problems.append(Problem(f"trl.{key}", f"only applies to rl: grpo (rl is {cfg.rl})"))
        return problems
    if (
        trl.reward_weights is not None
        and trl.reward_funcs
        and len(trl.reward_weights) < len(trl.reward_funcs)
    ):
        problems.append(
            Problem(
                "trl.reward_weights",
                f"{len(trl.reward_weights)} weights for {len(trl.reward_funcs)} reward functions; "
                "give one weight per function (plugin reward functions come after yours)",
            )
        )
    generations = trl.num_generations or 8
    batch = cfg.micro_batch_size * cfg.gradient_accumulation_steps
    if batch % generations:
        problems.append(
            Problem(
                "micro_batch_size",
                f"micro_batch_size x gradient_accumulation_steps ({batch}) must be a multiple of "
                f"trl.num_generations ({generations}) for rl: grpo",
            )
        )
    return problems


def _name_problems(cfg: Any) -> list[Problem]:
    problems = []
    if cfg.optimizer not in OPTIMIZERS:
        hint = did_you_mean(cfg.optimizer, OPTIMIZERS)
        problems.append(Problem("optimizer", f"unknown optimizer '{cfg.optimizer}'{hint}"))
    if cfg.lr_scheduler not in SCHEDULERS:
        hint = did_you_mean(cfg.lr_scheduler, SCHEDULERS)
        problems.append(Problem("lr_scheduler", f"unknown scheduler '{cfg.lr_scheduler}'{hint}"))
    for index, name in enumerate(cfg.report_to):
        if name not in TRACKERS:
            hint = did_you_mean(name, TRACKERS)
            problems.append(Problem(f"report_to[{index}]", f"unknown tracker '{name}'{hint}"))
    return problems


def _template_problem(path: str, value: str | None) -> Problem | None:
    """A ``chat_template`` that is neither Jinja nor a known name (a misspelt ``chatml``)."""
    from ftcore.modeling import NAMED_CHAT_TEMPLATES

    if not value or value in NAMED_CHAT_TEMPLATES or "{" in value:
        return None
    return Problem(
        path,
        f"unknown template name '{value}'{did_you_mean(value, NAMED_CHAT_TEMPLATES)}; give a "
        f"name ({', '.join(NAMED_CHAT_TEMPLATES)}) or Jinja text",
    )


def run_problems(cfg: Any) -> list[Problem]:
    """What a config needs before it can run (``ftcore validate`` and ``train`` check these)."""
    problems = []
    if not (cfg.base_model or cfg.base_model_config):
        problems.append(Problem("base_model", "required: a local model folder or a hub id"))
    if not cfg.datasets:
        problems.append(Problem("datasets", "required: add at least one dataset"))
    for key in ("output_dir", "dataset_prepared_path"):
        value = getattr(cfg, key)
        if value and (problem := _folder_problem(value)):
            problems.append(Problem(key, problem))
    return problems


def find_missing_local_paths(cfg: Any) -> list[Problem]:
    """The config's local model and data paths that do not exist on this machine. ``ftcore
    validate`` notes them (the config may be meant for another machine); ``train`` stops at them."""
    found = []
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        value = getattr(cfg, key)
        if value and is_local_path(value) and not expand(value).exists():
            found.append(Problem(key, f"no folder at {value} on this machine"))
    for key in ("datasets", "test_datasets"):
        for index, ds in enumerate(getattr(cfg, key)):
            if is_local_data_path(ds.path) and not expand(ds.path).exists():
                found.append(
                    Problem(
                        f"{key}[{index}].path", f"no file or folder at {ds.path} on this machine"
                    )
                )
    return found


def _folder_problem(value: str) -> str | None:
    """Why ``value`` cannot be (or become) a folder ftcore writes into, or ``None``."""
    path = Path(value).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing.is_file():
        return (
            f"{value} is a file; give a folder"
            if existing == path
            else f"{value}: {existing} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{value}: {existing} is not writable for this user; give a folder you can write to"
    return None


def core_problems(cfg: Any) -> list[Problem]:
    """Problems between core keys that no single field can see."""
    problems = _dataset_problems(cfg) + _name_problems(cfg) + parallel_problems(cfg)
    if cfg.val_set_size >= 1 and not float(cfg.val_set_size).is_integer():
        problems.append(
            Problem(
                "val_set_size",
                f"a fraction below 1 or a whole number of rows, got {cfg.val_set_size}",
            )
        )
    if cfg.rl or cfg.trl.model_fields_set:
        problems += (
            _trl_problems(cfg)
            if cfg.rl
            else [Problem("trl", "is set but rl is not; set rl: dpo, kto, orpo or grpo")]
        )
    if cfg.rl and cfg.sample_packing:
        problems.append(Problem("sample_packing", f"is not supported with rl: {cfg.rl}; remove it"))
    if cfg.bf16 is True and cfg.fp16:
        problems.append(Problem("fp16", "bf16 and fp16 are both true; choose one"))
    if cfg.lora_target_parameters and cfg.adapter != "lora":
        problems.append(Problem("lora_target_parameters", "needs adapter: lora"))
    if not cfg.adapter:  # else a forgotten adapter key silently makes a full fine-tune
        problems += [
            Problem(key, "is set but adapter is not; set adapter: lora (or qlora), or remove it")
            for key in sorted(cfg.model_fields_set)
            if key.startswith("lora_") and key != "lora_target_parameters"
        ]
    if cfg.lora_target_parameters and cfg.lora_dropout:
        problems.append(
            Problem(
                "lora_dropout",
                "must be 0 with lora_target_parameters (peft cannot apply dropout to LoRA on "
                "parameters); set lora_dropout: 0",
            )
        )
    if (cfg.adapter == "qlora" or cfg.load_in_4bit or cfg.load_in_8bit) and (
        cfg.model_init == "random"
    ):
        problems.append(
            Problem(
                "model_init",
                "random weights are not quantized (adapter: qlora, load_in_4bit, load_in_8bit "
                "quantize pretrained ones); use adapter: lora, or model_init: pretrained",
            )
        )
    for steps, per_epoch in (("save_steps", "saves_per_epoch"), ("eval_steps", "evals_per_epoch")):
        if getattr(cfg, steps) and getattr(cfg, per_epoch):
            problems.append(Problem(per_epoch, f"and {steps} are both set; choose one"))
    if problem := _template_problem("chat_template", cfg.chat_template):
        problems.append(problem)
    if cfg.adapter == "qlora" and cfg.load_in_8bit:
        problems.append(Problem("load_in_8bit", "adapter: qlora loads 4-bit weights; remove it"))
    return problems
