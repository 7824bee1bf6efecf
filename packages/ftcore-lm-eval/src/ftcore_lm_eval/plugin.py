"""Hook implementations of ftcore-lm-eval (lm-eval is imported only when evaluation runs)."""

from __future__ import annotations

from pathlib import Path

from ftcore import hookimpl


@hookimpl
def ftcore_config_schema():
    """Add the ``lm_eval_*`` keys."""
    from ftcore_lm_eval.config import LMEvalArgs

    return LMEvalArgs


@hookimpl
def ftcore_validate_config(cfg):
    """A task folder that does not exist is reported with the other config problems."""
    folder = cfg.lm_eval_include_path
    if folder and not Path(folder).expanduser().is_dir():
        return [("lm_eval_include_path", f"{folder} is not a folder of task YAMLs")]
    return None


@hookimpl
def ftcore_pre_model_load(cfg):
    """Check the task names before training, not after it (rank 0)."""
    from ftcore.dist import is_main_process

    if cfg.lm_eval_post_train and cfg.lm_eval_tasks and is_main_process():
        from ftcore_lm_eval.evaluate import check_tasks

        check_tasks(cfg)


@hookimpl
def ftcore_post_train_unload(cfg):
    """Evaluate the trained model once training memory is released (on rank 0 only)."""
    from ftcore.dist import is_main_process

    if cfg.lm_eval_post_train and cfg.lm_eval_tasks and is_main_process():
        from ftcore_lm_eval.evaluate import run_evaluation

        run_evaluation(cfg)


@hookimpl
def ftcore_cli_commands():
    """``ftcore lm-eval CONFIG``: evaluate without training."""
    return {"lm-eval": "ftcore_lm_eval.cli:lm_eval"}
