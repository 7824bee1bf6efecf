"""Which modules Spectrum trains: results in Spectrum's JSON format, and the selection per type."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any


def module_type(module: str) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``self_attn.q_proj`` (layer-index-free suffix)."""
    parts = module.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].isdigit():
            return ".".join(parts[index + 1 :])
    return ".".join(parts[-2:])


def linear_weights(model: Any) -> list[tuple[str, Any]]:
    """``(module name, weight)`` of every 2-D weight inside the decoder layers."""
    found = []
    for name, parameter in model.named_parameters():
        if parameter.ndim == 2 and name.endswith(".weight") and re.search(r"\.\d+\.", name):
            found.append((name.removesuffix(".weight"), parameter))
    return found


def results_json(snr: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Spectrum's format: ``{module: {"snr": x, "type": t}}``."""
    return {name: {"snr": value, "type": module_type(name)} for name, value in sorted(snr.items())}


def select_modules(results: dict[str, dict[str, Any]], top_fraction: float) -> list[str]:
    """The modules to train: per type, the highest-SNR ``top_fraction`` (at least one)."""
    by_type: dict[str, list[tuple[float, str]]] = {}
    for name, entry in results.items():
        snr = float(entry["snr"])
        # NaN (a matrix without signal, e.g. all zeros) ranks last; it would sort anywhere
        by_type.setdefault(entry["type"], []).append((-math.inf if math.isnan(snr) else snr, name))
    chosen = []
    for entries in by_type.values():
        entries.sort(key=lambda item: (-item[0], item[1]))
        keep = max(1, int(len(entries) * top_fraction))
        chosen += [name for _, name in entries[:keep]]
    return sorted(chosen)


def unfrozen_patterns(modules: list[str], embeddings: bool, lm_head: bool) -> list[str]:
    """``unfrozen_parameters`` regexes for the selected modules, norms, and the options."""
    patterns = [f"^{re.escape(module)}\\." for module in modules]
    patterns.append(r"norm\.weight$")  # norms: Spectrum gives them infinite SNR, always trained
    if embeddings:
        patterns.append(r"embed_tokens\.weight$")
    if lm_head:
        patterns.append(r"^lm_head\.weight$")
    return patterns


def slug(name: str) -> str:
    return re.sub(r"[/_\s]+", "-", name.strip("./")).lower()


def cache_file(model_name: str) -> Path:
    root = Path(os.environ.get("FTCORE_CACHE_DIR", Path.home() / ".cache" / "ftcore"))
    return root / "spectrum" / f"snr_results_{slug(model_name)}.json"


class NotAnSnrFile(ValueError):
    """A file that cannot be read as Spectrum SNR results; the message says why."""


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Spectrum's JSON at ``path``, checked; :class:`NotAnSnrFile` says what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotAnSnrFile(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise NotAnSnrFile(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise NotAnSnrFile(f"{path} is not JSON ({error})") from None
    # Spectrum's files also list embeddings, norms and the head, sometimes with Infinity.
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, dict) and "snr" in v and "type" in v for v in data.values())
    ):
        raise NotAnSnrFile(f"{path} is not a Spectrum SNR file ({{module: {{snr, type}}}})")
    for module, entry in data.items():
        snr = entry["snr"]
        if isinstance(snr, bool) or not isinstance(snr, int | float):
            raise NotAnSnrFile(f"{path}: the snr of {module} is {snr!r}, not a number")
    return data


def write_results(path: Path, results: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(results, indent=2))
    os.replace(staging, path)
