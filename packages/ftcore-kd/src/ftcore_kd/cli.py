"""``ftcore kd generate CONFIG``: run the teacher over the datasets, write a ``kd.chat_template`` file."""

from __future__ import annotations

import click


@click.group()
def kd() -> None:
    """Knowledge distillation: make the teacher's top-k logprobs dataset."""


@kd.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config_path", metavar="CONFIG")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--output", required=True, help="The JSONL file to write (resumed if it exists).")
def generate(config_path: str, overrides: tuple[str, ...], output: str) -> None:
    """Run CONFIG's teacher (kd_teacher_model or kd_online_server_base_url) over its datasets.

    Every row keeps its fields and gains the teacher's top-k for each trained token in
    ``logprobs_field``; train on the file with ``type: kd.chat_template``. An interrupted run
    continues where it stopped.
    """
    from ftcore.config import load_config
    from ftcore.errors import FtcoreError
    from ftcore_kd.generate import generate_dataset

    loaded = load_config(config_path, overrides, for_run=False)
    cfg = loaded.cfg
    if "kd" not in loaded.host.names:
        raise FtcoreError(f"{config_path} does not list kd under plugins; add it")
    if not (cfg.kd_teacher_model or cfg.kd_online_server_base_url) or not cfg.kd_top_k:
        raise FtcoreError(
            "kd generate needs a teacher: set kd_teacher_model (or kd_online_server_base_url) "
            "and kd_top_k"
        )
    written, skipped = generate_dataset(cfg, output)
    click.echo(
        f"wrote {written} rows to {output}" + (f" ({skipped} rows skipped)" if skipped else "")
    )
