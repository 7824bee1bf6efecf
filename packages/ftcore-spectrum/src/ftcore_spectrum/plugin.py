"""Hook implementations of ftcore-spectrum (nothing heavy imported at module level)."""

from __future__ import annotations

import logging

from ftcore import hookimpl

log = logging.getLogger("ftcore")


@hookimpl
def ftcore_config_schema():
    """Add the ``spectrum_*`` keys."""
    from ftcore_spectrum.config import SpectrumArgs

    return SpectrumArgs


@hookimpl
def ftcore_validate_config(cfg):
    """Spectrum chooses the trained parameters itself: not with an adapter or a hand-made list;
    a given SNR file must read as one."""
    problems = []
    if cfg.adapter:
        problems.append(
            (
                "adapter",
                f"spectrum trains a subset of the full model; remove adapter: {cfg.adapter}",
            )
        )
    if cfg.unfrozen_parameters:
        problems.append(
            ("unfrozen_parameters", "spectrum sets the trained parameters; remove this key")
        )
    if cfg.spectrum_snr_file:
        from ftcore_spectrum.selection import NotAnSnrFile, read_results

        try:
            read_results(cfg.spectrum_snr_file)
        except NotAnSnrFile as error:
            problems.append(("spectrum_snr_file", f"{error} (`ftcore spectrum scan` makes one)"))
    return problems


@hookimpl
def ftcore_post_model_build(cfg, model):
    """Select the highest-SNR matrices of each type; the core then freezes everything else."""
    from accelerate import PartialState

    from ftcore.dist import has_accelerator
    from ftcore_spectrum.scan import describe, layer_results, snr_results
    from ftcore_spectrum.selection import select_modules, unfrozen_patterns

    with PartialState(cpu=not has_accelerator()).main_process_first():  # rank 0 scans, others read
        results, source = snr_results(cfg, model)
    results = layer_results(results, model, source)
    chosen = select_modules(results, cfg.spectrum_top_fraction)
    cfg.unfrozen_parameters = unfrozen_patterns(
        chosen, cfg.spectrum_unfreeze_embeddings, cfg.spectrum_unfreeze_lm_head
    )
    log.info(
        "ftcore: spectrum trains %d of %d weight matrices (SNR from %s)\n%s",
        len(chosen),
        len(results),
        source,
        describe(results, chosen),
    )


@hookimpl
def ftcore_cli_commands():
    """``ftcore spectrum scan CONFIG``."""
    return {"spectrum": "ftcore_spectrum.cli:spectrum"}
