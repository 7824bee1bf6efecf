"""``transformers.TrainingArguments`` from the config, plus what plugins contribute."""

from __future__ import annotations

import logging
import math
from typing import Any

from ftcore.dist import has_accelerator
from ftcore.errors import FtcoreError
from ftcore.training.parallel import parallel_arguments

log = logging.getLogger("ftcore")


def uses_bf16(cfg: Any) -> bool:
    if cfg.bf16 != "auto":
        return bool(cfg.bf16)
    if cfg.fp16:
        return False
    import torch

    return bool(has_accelerator() and torch.cuda.is_bf16_supported())


def _interval(
    per_epoch: int | None, steps: int | None, updates_per_epoch: int
) -> tuple[str, int | None]:
    if steps:
        return "steps", steps
    if per_epoch:
        return "steps", max(1, math.floor(updates_per_epoch / per_epoch))
    return "epoch", None


def training_arguments(
    cfg: Any,
    host: Any,
    train_rows: int,
    has_eval: bool,
    world_size: int = 1,
    arguments_class: type | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Build the ``TrainingArguments`` (or a TRL config class) of a run.

    :param train_rows: rows (packed rows when packing) in the training set, to turn
        ``evals_per_epoch``/``saves_per_epoch`` into step intervals.
    :param arguments_class: ``TrainingArguments`` or a subclass such as ``trl.DPOConfig``.
    :param extra: method-specific values (the ``trl:`` block), applied before plugin values.
    """
    from transformers import TrainingArguments

    arguments_class = arguments_class or TrainingArguments
    per_update = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size
    updates_per_epoch = max(1, math.ceil(train_rows / per_update))
    save_strategy, save_steps = _interval(cfg.saves_per_epoch, cfg.save_steps, updates_per_epoch)
    eval_strategy, eval_steps = ("no", None)
    if has_eval:
        eval_strategy, eval_steps = _interval(
            cfg.evals_per_epoch, cfg.eval_steps, updates_per_epoch
        )
    warmup: float = cfg.warmup_steps if cfg.warmup_steps is not None else (cfg.warmup_ratio or 0.0)
    args: dict[str, Any] = {
        "output_dir": cfg.output_dir,
        "per_device_train_batch_size": cfg.micro_batch_size,
        "per_device_eval_batch_size": cfg.eval_batch_size or cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "num_train_epochs": cfg.num_epochs,
        "max_steps": cfg.max_steps or -1,
        "learning_rate": cfg.learning_rate,
        "optim": cfg.optimizer,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": warmup,
        "weight_decay": cfg.weight_decay,
        "adam_beta1": cfg.adam_beta1,
        "adam_beta2": cfg.adam_beta2,
        "adam_epsilon": cfg.adam_epsilon,
        "max_grad_norm": cfg.max_grad_norm,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "eval_strategy": eval_strategy,
        "eval_steps": eval_steps,
        "save_strategy": save_strategy,
        "save_steps": save_steps,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": uses_bf16(cfg),
        "fp16": cfg.fp16,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "dataloader_num_workers": cfg.dataloader_num_workers,
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": False,
        "prediction_loss_only": True,
        "report_to": list(cfg.report_to) or "none",
    }
    if cfg.tf32:
        args["tf32"] = True
    if not has_accelerator():
        args["use_cpu"] = True  # also makes torchrun/accelerate use gloo across CPU processes
    args.update(parallel_arguments(cfg))
    args.update(extra or {})
    for key, value in host.training_args(cfg).items():
        if key in args and args[key] != value:
            log.info(
                "ftcore: a plugin sets training argument %s=%r (was %r)", key, value, args[key]
            )
        args[key] = value
    try:
        built = arguments_class(**{k: v for k, v in args.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise FtcoreError(f"invalid {arguments_class.__name__}: {exc}") from exc
    return one_gpu_per_process(built)


def one_gpu_per_process(args: Any) -> Any:
    """Keep a lone process on one GPU where transformers would spread it with nn.DataParallel.

    DataParallel copies the model to every GPU at each step and drives the copies from one Python
    process: on two H200s it did 37k tokens/s per GPU, against 45k with DDP (``--nproc 2``) and
    47k on one GPU alone.
    """
    gpus = args.n_gpu
    if args.world_size == 1 and gpus > 1:
        log.warning(
            "ftcore: %d GPUs are visible to this one process; it trains on the first. "
            "ftcore train --nproc %d trains on all of them (distributed data parallel)",
            gpus,
            gpus,
        )
        args._n_gpu = 1  # transformers' own switch (it sets it for model-parallel models)
    return args
