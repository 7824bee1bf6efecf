"""Hook implementations of ftcore-lm-eval (lm-eval is imported only when evaluation runs)."""

from __future__ import annotations

import logging

from ftcore import hookimpl

log = logging.getLogger("ftcore")


@hookimpl
def ftcore_config_schema():
    """Add the ``lm_eval_*`` keys."""
    from ftcore_lm_eval.config import LMEvalArgs

    return LMEvalArgs


@hookimpl
def ftcore_validate_config(cfg):
    """A task folder that does not exist, or holds a YAML that does not parse, is reported with
    the other config problems."""
    if cfg.lm_eval_include_path:
        from ftcore_lm_eval.tasks import task_folder_problem

        if problem := task_folder_problem(cfg.lm_eval_include_path):
            return [("lm_eval_include_path", problem)]
    return None


@hookimpl
def ftcore_configure(cfg):
    """Say when nothing would be evaluated."""
    if not cfg.lm_eval_tasks:
        log.warning(
            "ftcore: lm-eval is in plugins but lm_eval_tasks is empty, so nothing is evaluated; "
            "name tasks, e.g. lm_eval_tasks: [hellaswag]"
        )


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
        from ftcore.errors import FtcoreError
        from ftcore_lm_eval.evaluate import run_evaluation

        try:
            run_evaluation(cfg)
        except FtcoreError as error:
            raise FtcoreError(
                f"{error}\nTraining finished and the model is saved in {cfg.output_dir}; once this "
                "is fixed, evaluate it with: ftcore lm-eval CONFIG"
            ) from None


@hookimpl
def ftcore_cli_commands():
    """``ftcore lm-eval CONFIG``: evaluate without training."""
    return {"lm-eval": "ftcore_lm_eval.cli:lm_eval"}
