"""Scan a model (or read a Spectrum file) and choose what to train."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError
from ftcore_spectrum.selection import (
    NotAnSnrFile,
    cache_file,
    linear_weights,
    read_results,
    results_json,
    write_results,
)

log = logging.getLogger("ftcore")


def model_name(cfg: Any) -> str:
    """The cache name: the model's name plus what tells its weights apart (files, or the seed)."""
    name = cfg.spectrum_model_name or cfg.base_model or cfg.base_model_config or "model"
    if cfg.spectrum_model_name:
        return name
    folder = Path(name).expanduser()
    if cfg.model_init == "random":
        return f"{name}-random-seed{cfg.seed}"
    if folder.is_dir():
        stamp = "|".join(
            f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in sorted(folder.glob("*.safetensors"))
        )
        return f"{name}-{hashlib.sha256(stamp.encode()).hexdigest()[:8]}"
    return name


def scan_model(model: Any, show_progress: bool = True) -> dict[str, dict[str, Any]]:
    """SNR of every decoder weight matrix of ``model``, in Spectrum's format."""
    from tqdm.auto import tqdm

    from ftcore_spectrum.snr import scan_snr

    weights = linear_weights(model)
    with tqdm(
        total=len(weights), desc="Spectrum SNR scan", unit="matrix", disable=not show_progress
    ) as bar:
        snr = scan_snr(weights, progress=bar.update)
    return results_json(snr)


def snr_results(cfg: Any, model: Any) -> tuple[dict[str, dict[str, Any]], str]:
    """The SNR results for ``cfg``: the given file, the cache, or a fresh scan (then cached)."""
    if cfg.spectrum_snr_file:
        try:
            return read_results(cfg.spectrum_snr_file), f"file {cfg.spectrum_snr_file}"
        except NotAnSnrFile as error:
            raise FtcoreError(f"spectrum_snr_file: {error}") from None
    cached = cache_file(model_name(cfg))
    if cached.is_file():
        try:
            return read_results(cached), f"cache {cached}"
        except NotAnSnrFile as error:  # a damaged cache costs a scan, not the run
            log.warning("ftcore: spectrum's cache is unusable (%s); scanning again", error)
    results = scan_model(model)
    write_results(cached, results)
    return results, f"a scan (cached in {cached})"


def layer_results(
    results: dict[str, dict[str, Any]], model: Any, source: str
) -> dict[str, dict[str, Any]]:
    """The entries for this model's layer matrices.

    Spectrum's own files also list embeddings, norms and the head; those are handled by the
    options and the norm rule, not by ranking. Results that name none of this model's matrices, or
    miss some, were made for another model.
    """
    names = {name for name, _ in linear_weights(model)}
    found = {name: entry for name, entry in results.items() if name in names}
    missing = sorted(names - set(found))
    if missing:
        raise FtcoreError(
            f"spectrum: the SNR results from {source} lack {len(missing)} of this model's "
            f"{len(names)} weight matrices (e.g. {missing[0]}); they were made for another model: "
            "set spectrum_snr_file or spectrum_model_name to match base_model"
        )
    return found


def describe(results: dict[str, dict[str, Any]], chosen: list[str]) -> str:
    """A table per type: how many matrices, how many trained, the SNR range of the trained ones."""
    by_type: dict[str, list[tuple[str, float]]] = {}
    for name, entry in results.items():
        by_type.setdefault(entry["type"], []).append((name, float(entry["snr"])))
    selected = set(chosen)
    lines = [f"{'type':<24} {'trained':>9}  {'snr of trained':>22}"]
    for kind, entries in sorted(by_type.items()):
        picked = [snr for name, snr in entries if name in selected]
        span = f"{min(picked):.4f} .. {max(picked):.4f}" if picked else "-"
        lines.append(f"{kind:<24} {len(picked):>4}/{len(entries):<4}  {span:>22}")
    return "\n".join(lines)


def output_path(path: str | None, cfg: Any) -> Path:
    return Path(path) if path else cache_file(model_name(cfg))
