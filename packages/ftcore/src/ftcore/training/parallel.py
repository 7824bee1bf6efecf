"""``fsdp_config:`` and ``deepspeed:`` turned into the Trainer's arguments.

accelerate and torch.distributed do the sharding and the communication; this module only says
what the config asks for, in the form ``transformers.TrainingArguments`` reads, and checks the
combinations that cannot work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError, Problem

_ZERO_COMMON: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
}

#: ``deepspeed: zero3`` and friends; "auto" values are filled in by transformers from the config.
DEEPSPEED_PRESETS: dict[str, dict[str, Any]] = {
    "zero1": {**_ZERO_COMMON, "zero_optimization": {"stage": 1}},
    "zero2": {
        **_ZERO_COMMON,
        "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True},
    },
    "zero3": {
        **_ZERO_COMMON,
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "stage3_gather_16bit_weights_on_model_save": True,
        },
    },
    "zero3_offload": {
        **_ZERO_COMMON,
        "zero_optimization": {
            "stage": 3,
            "offload_param": {"device": "cpu", "pin_memory": True},
            "offload_optimizer": {"device": "cpu", "pin_memory": True},
            "stage3_gather_16bit_weights_on_model_save": True,
        },
    },
}


def deepspeed_config(value: str | dict[str, Any]) -> dict[str, Any]:
    """The DeepSpeed config a ``deepspeed:`` value names (preset, JSON file or inline)."""
    if isinstance(value, dict):
        config = json.loads(json.dumps(value))
    elif value in DEEPSPEED_PRESETS:
        config = json.loads(json.dumps(DEEPSPEED_PRESETS[value]))
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            presets = ", ".join(DEEPSPEED_PRESETS)
            raise FtcoreError(f"deepspeed: {value} is neither a preset ({presets}) nor a file")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise FtcoreError(f"deepspeed: {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise FtcoreError("deepspeed: the config must be a JSON object")
    zero = config.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else None
    if stage not in (0, 1, 2, 3):
        raise FtcoreError(f"deepspeed: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    if stage == 3:  # the final save gathers a normal model instead of writing ZeRO shards
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)
    return config


def parallel_problems(cfg: Any) -> list[Problem]:
    """Combinations of the multi-GPU keys that cannot run."""
    problems = []
    if cfg.fsdp_config is not None and cfg.deepspeed is not None:
        problems.append(Problem("deepspeed", "fsdp_config is set too; choose FSDP or DeepSpeed"))
    if cfg.fsdp_config is not None and cfg.gradient_checkpointing:
        problems.append(
            Problem(
                "gradient_checkpointing",
                "with fsdp_config use fsdp_config.activation_checkpointing: true instead "
                "(gradient_checkpointing adds an all-gather per layer in the backward pass)",
            )
        )
    if cfg.fsdp_config is not None and cfg.adapter == "qlora":
        problems.append(
            Problem(
                "adapter",
                "qlora's 4-bit weights cannot be sharded by FSDP2; use adapter: lora, or "
                "deepspeed: zero3 instead of fsdp_config",
            )
        )
    if cfg.deepspeed is not None:
        try:
            deepspeed_config(cfg.deepspeed)
        except FtcoreError as exc:
            problems.append(Problem("deepspeed", str(exc).removeprefix("deepspeed: ")))
    return problems


def parallel_arguments(cfg: Any) -> dict[str, Any]:
    """``TrainingArguments`` keys for ``fsdp_config`` / ``deepspeed`` (empty for neither)."""
    from ftcore.dist import has_accelerator

    if (cfg.fsdp_config is not None or cfg.deepspeed is not None) and not has_accelerator():
        key = "fsdp_config" if cfg.fsdp_config is not None else "deepspeed"
        raise FtcoreError(
            f"{key} shards the model across CUDA GPUs and none is visible; remove it to train on "
            "the CPU (ftcore train --nproc N still runs N data-parallel processes there)"
        )
    if cfg.fsdp_config is not None:
        fsdp = cfg.fsdp_config.model_dump(exclude_none=True)
        return {"fsdp": True, "fsdp_config": fsdp}
    if cfg.deepspeed is not None:
        require_deepspeed()
        return {"deepspeed": deepspeed_config(cfg.deepspeed)}
    return {}


def require_deepspeed() -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise FtcoreError(
            "deepspeed: is set but the deepspeed package is not installed; "
            'pip install "ftcore[deepspeed]" (or remove the key, or use fsdp_config)'
        )
