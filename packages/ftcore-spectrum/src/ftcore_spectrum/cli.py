"""``ftcore spectrum scan CONFIG``: compute and cache the SNR of a model's weight matrices."""

from __future__ import annotations

import click


@click.group()
def spectrum() -> None:
    """Spectrum: signal-to-noise ratios of weight matrices."""


@spectrum.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("config_path", metavar="CONFIG")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
@click.option("--output", help="Where to write the JSON (default: the cache the plugin reads).")
def scan(config_path: str, overrides: tuple[str, ...], output: str | None) -> None:
    """Scan the model of CONFIG, print what spectrum_top_fraction selects, write the JSON."""
    from ftcore.config import load_config
    from ftcore.errors import FtcoreError
    from ftcore.modeling import build_model
    from ftcore_spectrum.scan import describe, output_path, scan_model
    from ftcore_spectrum.selection import select_modules, write_results

    loaded = load_config(config_path, overrides)
    if "spectrum" not in loaded.host.names:
        raise FtcoreError(f"{config_path} does not list spectrum under plugins; add it")
    cfg = loaded.cfg
    results = scan_model(build_model(cfg))
    target = output_path(output, cfg)
    write_results(target, results)
    chosen = select_modules(results, cfg.spectrum_top_fraction)
    click.echo(describe(results, chosen))
    click.echo(f"wrote {len(results)} SNR values to {target}")
