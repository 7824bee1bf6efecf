"""``ftcore validate``, ``ftcore train`` and ``ftcore preprocess``."""

from __future__ import annotations

import os
import shlex

import click

from ftcore.errors import FtcoreError

OVERRIDE_SETTINGS = {"ignore_unknown_options": True, "allow_extra_args": True}

config_argument = click.argument(
    "config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=str)
)
overrides_argument = click.argument("overrides", nargs=-1, type=click.UNPROCESSED)


def load(config_path: str, overrides: tuple[str, ...], for_run: bool = True):
    """Load and validate a config (imported lazily: pydantic is not needed for ``--help``)."""
    from ftcore.config import load_config

    return load_config(config_path, overrides, for_run=for_run)


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
def validate(config_path: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG: core and plugin keys, plugin cross-checks, model-part claims.

    Overrides are written key=value or --key value (dotted for nested keys).
    """
    from ftcore.config.checks import find_missing_local_paths

    loaded = load(config_path, overrides)
    for problem in find_missing_local_paths(loaded.cfg):
        click.echo(f"note: {problem}", err=True)
    plugins = ", ".join(loaded.host.names) or "none"
    click.echo(f"config OK: {loaded.source} (plugins: {plugins})")


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
@click.option("--nproc", type=int, help="Processes (GPUs) on this node; starts them with torchrun.")
@click.option("--nnodes", type=int, default=1, show_default=True, help="Nodes of the run.")
@click.option("--node-rank", type=int, default=0, show_default=True, help="This node's rank.")
@click.option("--master-addr", help="Address of node 0 (with --nnodes > 1).")
@click.option("--master-port", type=int, help="Port on node 0 (default 29500 across nodes).")
def train(
    config_path: str,
    overrides: tuple[str, ...],
    nproc: int | None,
    nnodes: int,
    node_rank: int,
    master_addr: str | None,
    master_port: int | None,
) -> None:
    """Fine-tune the model that CONFIG describes.

    Overrides are written key=value or --key value (dotted for nested keys). ``--nproc N`` runs
    on N GPUs of this node through torchrun (DDP, or FSDP2 / DeepSpeed as the config says); the
    same command also runs unchanged under ``accelerate launch`` and ``torchrun``.
    """
    from ftcore.dist import is_main_process

    if nproc is None and (nnodes != 1 or node_rank or master_addr or master_port):
        raise FtcoreError("--nnodes, --node-rank, --master-addr and --master-port need --nproc")
    if nproc is not None:
        from ftcore.launch import Launch, run_under_torchrun

        launch = Launch(nproc, nnodes, node_rank, master_addr, master_port)
        loaded = load(config_path, overrides)  # config errors once, before any process starts
        try:
            status = run_under_torchrun(launch, ["train", config_path, *overrides])
        except KeyboardInterrupt:
            again = [config_path, *overrides, *launch.cli_arguments()]
            raise KeyboardInterrupt(describe_resume(loaded.cfg.output_dir, again)) from None
        if status:
            raise click.exceptions.Exit(status)
        return

    from ftcore.launch import LAUNCHED
    from ftcore.pipeline import train as run_training

    loaded = load(config_path, overrides)
    try:
        metrics = run_training(loaded)
    except KeyboardInterrupt:
        if not is_main_process() or os.environ.get(LAUNCHED):  # one message, from rank 0 or --nproc
            raise click.exceptions.Exit(130) from None
        again = [config_path, *overrides]
        raise KeyboardInterrupt(describe_resume(loaded.cfg.output_dir, again)) from None
    if "train_loss" in metrics and is_main_process():
        click.echo(f"train_loss: {metrics['train_loss']:.4f}")


def describe_resume(output_dir: str, arguments: list[str]) -> str:
    """What an interrupted ``ftcore train ARGUMENTS`` leaves, and the command that continues it."""
    from pathlib import Path

    from ftcore.training.checkpoints import newest_complete

    newest = newest_complete(Path(output_dir))
    if newest is None:
        return f"no complete checkpoint in {output_dir}; the run starts from step 0 next time"
    # the same arguments (an output_dir override among them), then auto: the last value wins
    command = ["ftcore", "train", *arguments, "resume_from_checkpoint=auto"]
    return f"the newest complete checkpoint is {newest}; continue with: {shlex.join(command)}"


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
def preprocess(config_path: str, overrides: tuple[str, ...]) -> None:
    """Tokenize the datasets of CONFIG into the cache that ``ftcore train`` reuses."""
    from ftcore.pipeline import preprocess as run_preprocess

    data = run_preprocess(load(config_path, overrides))
    state = "already cached" if data.from_cache else "tokenized"
    click.echo(
        f"{state}: {len(data.train)} train rows"
        + (f", {len(data.eval)} eval rows" if data.eval is not None else "")
        + f" in {data.cache_dir}"
    )
