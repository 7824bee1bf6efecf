"""``ftcore lm-eval CONFIG [OVERRIDES]``: evaluate a model without training it."""

from __future__ import annotations

import click


@click.command(
    name="lm-eval", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("config_path", metavar="CONFIG")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def lm_eval(config_path: str, overrides: tuple[str, ...]) -> None:
    """Run lm_eval_tasks on lm_eval_model, else the trained model in output_dir, else base_model.

    The config is validated as for ftcore train; results go to <output_dir>/lm_eval_results/.
    """
    from ftcore.config import load_config
    from ftcore.errors import FtcoreError

    loaded = load_config(config_path, overrides, for_run=True)
    if "lm-eval" not in loaded.host.names:
        raise FtcoreError(f"{config_path} does not list lm-eval under plugins; add it")
    from ftcore.dist import is_main_process
    from ftcore_lm_eval.evaluate import run_evaluation

    if is_main_process():  # under a launcher, evaluate once
        path = run_evaluation(loaded.cfg)
        click.echo(f"results: {path}")
