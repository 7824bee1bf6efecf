"""``ftcore sparsify CONFIG``: a sparse model from a dense one, with one-shot pruning."""

from __future__ import annotations

import click


def _structure(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``unstructured``, or ``N:M`` with ``0 < N < M`` (N of every M weights pruned)."""
    if value == "unstructured":
        return value
    n, _, m = value.partition(":")
    if not (n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
        raise click.BadParameter(f"N:M with 0 < N < M (e.g. 2:4), or unstructured; got {value!r}")
    return value


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config_path", metavar="CONFIG")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--structure",
    default="2:4",
    show_default=True,
    callback=_structure,
    help="N:M pattern (N of every M weights pruned), or 'unstructured'.",
)
@click.option(
    "--sparsity",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Share of weights set to zero, for unstructured pruning (default 0.5); N:M sets its own.",
)
@click.option(
    "--method", type=click.Choice(["sparsegpt", "wanda"]), default="sparsegpt", show_default=True
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Calibration rows from the config's datasets.",
)
@click.option("--output", help="Folder of the sparse model (default: <output_dir>/sparse).")
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it holds files.")
def sparsify(config_path, overrides, structure, sparsity, method, samples, output, overwrite):
    """Prune base_model of CONFIG once (SparseGPT or Wanda), calibrated on its datasets."""
    from ftcore.config import load_config
    from ftcore_llmcompressor.sparsify import sparsify_model

    if sparsity is not None and structure != "unstructured":
        n, m = structure.split(":")
        raise click.UsageError(
            f"--sparsity is for --structure unstructured: {structure} prunes {n} of every {m} "
            "weights; leave --sparsity out"
        )
    cfg = load_config(config_path, overrides, for_run=True).cfg
    target = sparsify_model(cfg, structure, sparsity, method, samples, output, overwrite)
    click.echo(f"sparse model saved to {target}")
