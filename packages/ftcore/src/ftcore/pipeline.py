"""The training pipeline: data -> model -> trainer -> train -> save -> manifest, hooks at every step.

Order of the hooks in a run (after the config hooks of :func:`ftcore.config.load_config`):

1. ``ftcore_dataset_strategies``, ``ftcore_load_datasets`` (rank 0 first; the others reuse the cache)
2. ``ftcore_pre_model_load``, ``ftcore_post_model_build``, ``ftcore_pre_adapter_load`` and
   ``ftcore_post_adapter_load`` (with an adapter), ``ftcore_post_model_load``
3. ``ftcore_data_collator`` (train, then eval), ``ftcore_training_args``, ``ftcore_trainer_class``,
   ``ftcore_callbacks``, ``ftcore_post_trainer_create``
4. training: ``ftcore_create_optimizer``, ``ftcore_create_lr_scheduler``, ``ftcore_compute_loss``
   on every step
5. ``ftcore_save_model``, ``ftcore_post_train``, then ``ftcore_post_train_unload`` once memory is freed
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ftcore.dist import has_accelerator, is_main_process, world_size
from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")


def _quiet_other_ranks() -> None:
    if not is_main_process():
        log.setLevel(logging.WARNING)


def prepare_data(loaded: Any) -> tuple[Any, Any]:
    """Load the tokenizer and the tokenized datasets; rank 0 tokenizes, the others wait and reuse."""
    from accelerate import PartialState

    from ftcore.data.prepare import PreparedData, prepare_datasets
    from ftcore.modeling import load_tokenizer

    cfg, host = loaded.cfg, loaded.host
    tokenizer = load_tokenizer(cfg)
    strategies = {name: strategy for _, name, strategy in host.dataset_strategies()}
    with PartialState(cpu=not has_accelerator()).main_process_first():
        custom = host.load_datasets(cfg, tokenizer)
        if custom is None:
            data = prepare_datasets(cfg, tokenizer, strategies)
        elif isinstance(custom, PreparedData):
            data = custom
        else:
            raise FtcoreError(
                f"a plugin's ftcore_load_datasets returned {type(custom).__name__}; "
                "it must return ftcore.data.prepare.PreparedData"
            )
    return tokenizer, data


def preprocess(loaded: Any) -> Any:
    """``ftcore preprocess``: fill the tokenization cache and report what it holds."""
    _quiet_other_ranks()
    _, data = prepare_data(loaded)
    return data


def _collators(cfg: Any, host: Any, tokenizer: Any) -> tuple[Any, Any]:
    from ftcore.data.packing import PackedCollator, PaddingCollator

    default = (PackedCollator if cfg.sample_packing else PaddingCollator)(tokenizer.pad_token_id)
    train = host.data_collator(cfg, tokenizer, False) or default
    evaluation = host.data_collator(cfg, tokenizer, True) or default
    return train, evaluation


def _save_final(trainer: Any, tokenizer: Any, output_dir: Path) -> None:
    """Save weights and tokenizer into ``output_dir`` without ever leaving a half-written file."""
    from ftcore.saving import publish, staging_dir

    trainer.model.config.use_cache = True  # for whoever generates with the saved model
    if getattr(trainer, "is_fsdp_enabled", False):  # checkpoints may be sharded; the model is not
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    staging = staging_dir(output_dir) if is_main_process() else output_dir / ".ftcore-final.tmp"
    try:
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(staging))
        trainer.accelerator.wait_for_everyone()
        if is_main_process():
            tokenizer.save_pretrained(str(staging))
    except BaseException:  # Ctrl-C or a full disk: no hidden half-saved model stays behind
        if is_main_process():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if is_main_process():
        publish(staging, output_dir)  # outside: once it starts, the staging folder is the model


def _sft_trainer(
    loaded: Any, model: Any, tokenizer: Any, train_set: Any, eval_set: Any, args_for: Any
) -> Any:
    from transformers import Trainer

    from ftcore.training.trainer import compose_trainer_class

    cfg, host = loaded.cfg, loaded.host
    train_collator, eval_collator = _collators(cfg, host, tokenizer)
    args = args_for()
    trainer_class = compose_trainer_class(host.trainer_class(cfg) or Trainer)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=train_collator,
        processing_class=tokenizer,
        callbacks=host.callbacks(cfg, model),
    )
    trainer.ftcore_eval_collator = eval_collator
    return trainer


def train(loaded: Any) -> dict[str, Any]:
    """``ftcore train``: run the whole pipeline; return the final metrics.

    If anything fails after the config loaded, ``ftcore_on_train_error`` runs, then the error
    propagates unchanged.
    """
    output_dir = Path(loaded.cfg.output_dir)
    new_output = not output_dir.exists()
    try:
        return _train(loaded)
    except BaseException as exc:
        loaded.host.on_train_error(loaded.cfg, exc)
        if new_output and is_main_process():
            _remove_if_no_file(output_dir)
        raise


def _remove_if_no_file(top: Path) -> None:
    """Remove ``top`` if no file is in it, with its empty folders: what a run that failed early
    created (a tracker's log folder, for one)."""
    if not top.is_dir() or any(files for _, _, files in os.walk(top)):
        return
    shutil.rmtree(top, ignore_errors=True)


def _train(loaded: Any) -> dict[str, Any]:
    from transformers import set_seed

    from ftcore.data.packing import pack_dataset
    from ftcore.manifest import MANIFEST_NAME, build_manifest, write_json_atomically
    from ftcore.modeling import load_model
    from ftcore.training.arguments import training_arguments
    from ftcore.training.checkpoints import (
        checkpoint_step,
        clear_earlier_run,
        is_final_save_of,
        other_parameters_error,
        report_finished_run,
        resolve_resume,
    )
    from ftcore.training.universal import needs_universal, prepare_universal, universal_loading

    _quiet_other_ranks()
    cfg, host = loaded.cfg, loaded.host
    rewards: list[Any] = []
    if cfg.rl:
        from ftcore.rl import check_rl

        rewards = check_rl(cfg, host)  # before anything is cleared, read or loaded
    output_dir = Path(cfg.output_dir)
    clear_earlier_run(cfg.resume_from_checkpoint, output_dir, cfg.overwrite_output_dir)
    resume = resolve_resume(cfg.resume_from_checkpoint, output_dir)
    # a ZeRO checkpoint of another world size loads through DeepSpeed's universal checkpoint
    universal = bool(resume) and cfg.deepspeed is not None and needs_universal(resume, world_size())
    if universal:  # before the data and the model take their time and memory
        prepare_universal(resume, world_size())
    set_seed(cfg.seed)
    tokenizer, data = prepare_data(loaded)
    train_set, eval_set = data.train, data.eval
    if cfg.sample_packing:
        train_set, efficiency = pack_dataset(train_set, cfg.sequence_len)
        log.info(
            "ftcore: packed %d examples into %d rows of %d tokens (efficiency %.1f%%)",
            len(data.train),
            len(train_set),
            cfg.sequence_len,
            100 * efficiency,
        )
        if eval_set is not None:
            eval_set, _ = pack_dataset(eval_set, cfg.sequence_len)

    set_seed(cfg.seed)
    model = load_model(cfg, tokenizer, host)

    def args_for(arguments_class: type | None = None, extra: dict[str, Any] | None = None) -> Any:
        rows = len(train_set)
        if universal:
            extra = {**(extra or {}), "deepspeed": universal_loading(cfg.deepspeed)}
        return training_arguments(
            cfg, host, rows, eval_set is not None, world_size(), arguments_class, extra
        )

    if cfg.rl:
        from ftcore.rl import build_rl_trainer

        trainer = build_rl_trainer(loaded, model, tokenizer, train_set, eval_set, args_for, rewards)
    else:
        trainer = _sft_trainer(loaded, model, tokenizer, train_set, eval_set, args_for)
    trainer.ftcore_cfg, trainer.ftcore_host = cfg, host
    trainer.ftcore_save_total_limit = cfg.save_total_limit
    host.post_trainer_create(cfg, trainer)

    manifest = output_dir / MANIFEST_NAME
    resumed_step = checkpoint_step(Path(resume)) if resume else None
    # transformers trains one step past max_steps when it resumes a run that reached them
    finished = resumed_step is not None and is_final_save_of(
        manifest, Path(resume), 0 < trainer.args.max_steps <= resumed_step
    )
    if not finished:
        if resume:
            log.info("ftcore: resuming from %s", resume)
        try:
            result = trainer.train(resume_from_checkpoint=resume)
        except ValueError as error:
            if resume and (explained := other_parameters_error(error, resume)):
                raise explained from None
            raise
        # an epoch-based run that had reached its end trains no step
        finished = resumed_step is not None and is_final_save_of(
            manifest, Path(resume), result.global_step <= resumed_step
        )
    if finished:
        metrics = report_finished_run(resume, manifest)
    else:
        metrics = dict(result.metrics)
        if eval_set is not None:
            metrics.update(trainer.evaluate())
        if not host.save_model(cfg, trainer, str(output_dir)):
            _save_final(trainer, tokenizer, output_dir)
        if is_main_process():
            record = build_manifest(loaded, data, metrics, trainer.state.global_step)
            write_json_atomically(manifest, record)
            log.info("ftcore: saved the model and %s to %s", MANIFEST_NAME, output_dir)
    host.post_train(cfg, trainer)

    del trainer, model
    gc.collect()
    _empty_device_cache()
    host.post_train_unload(cfg)
    return metrics


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
