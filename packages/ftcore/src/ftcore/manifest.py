"""The run manifest: what ran, with which versions and data, written to ``output_dir``."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_NAME = "ftcore_run.json"
LIBRARIES = ("ftcore", "torch", "transformers", "peft", "trl", "datasets", "accelerate")


def _version(distribution: str | None) -> str | None:
    if not distribution:
        return None
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def build_manifest(
    loaded: Any,
    data: Any = None,
    metrics: dict[str, Any] | None = None,
    global_step: int | None = None,
) -> dict[str, Any]:
    """The manifest of a run: resolved config (secrets redacted), versions, data fingerprints,
    and the optimizer step the saved model is at."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "global_step": global_step,
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "plugins": [
            {
                "name": plugin.name,
                "distribution": plugin.distribution,
                "version": plugin.version or _version(plugin.distribution),
            }
            for plugin in loaded.host.plugins
        ],
        "config": loaded.redacted(),
        "data": {
            "fingerprint": data.fingerprint,
            "cache": str(data.cache_dir),
            **{k: v for k, v in data.summary.items() if k != "fingerprint"},
        }
        if data is not None
        else None,
        "metrics": metrics or {},
    }


def recorded_step(manifest: Path) -> int | None:
    """The ``global_step`` a manifest records (``None`` if there is none, or no readable file)."""
    try:
        return json.loads(manifest.read_text()).get("global_step")
    except (OSError, ValueError, AttributeError):
        return None


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(staging, path)
