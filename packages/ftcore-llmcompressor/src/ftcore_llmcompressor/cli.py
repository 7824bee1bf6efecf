"""``ftcore sparsify CONFIG``: a sparse model from a dense one, with one-shot pruning."""

from __future__ import annotations

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config_path", metavar="CONFIG")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--structure", default="2:4", show_default=True, help="N:M pattern, or 'unstructured'."
)
@click.option("--sparsity", default=0.5, show_default=True, help="Share of weights set to zero.")
@click.option(
    "--method", type=click.Choice(["sparsegpt", "wanda"]), default="sparsegpt", show_default=True
)
@click.option(
    "--samples", default=64, show_default=True, help="Calibration rows from the config's datasets."
)
@click.option("--output", help="Folder of the sparse model (default: <output_dir>/sparse).")
def sparsify(config_path, overrides, structure, sparsity, method, samples, output) -> None:
    """Prune base_model of CONFIG once (SparseGPT or Wanda), calibrated on its datasets."""
    from ftcore.config import load_config
    from ftcore_llmcompressor.sparsify import sparsify_model

    cfg = load_config(config_path, overrides, for_run=True).cfg
    target = sparsify_model(cfg, structure, sparsity, method, samples, output)
    click.echo(f"sparse model saved to {target}")
