"""Publishing a saved model into ``output_dir`` without ever leaving a half-written file.

Whoever saves (the core, or a plugin through ``ftcore_save_model``) writes into
:func:`staging_dir`, then calls :func:`publish`: files are moved into place one rename each, and
weight files of an earlier run that the new save does not contain are removed first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Files of a saved model; a new save removes those of an earlier run that it does not write.
WEIGHT_FILES = ("model*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
                "adapter_model*", "adapter_config.json", "recipe.yaml")  # fmt: skip


def staging_dir(output_dir: str | Path) -> Path:
    """An empty folder inside ``output_dir`` to save into before :func:`publish`."""
    staging = Path(output_dir) / ".ftcore-final.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, output_dir: str | Path) -> None:
    """Move everything in ``staging`` into ``output_dir`` and remove ``staging``."""
    output_dir = Path(output_dir)
    written = {item.name for item in staging.iterdir()}
    for pattern in WEIGHT_FILES:
        for stale in output_dir.glob(pattern):
            if stale.name not in written and stale.is_file():
                stale.unlink()
    for item in sorted(staging.iterdir()):
        target = output_dir / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(item, target)
    staging.rmdir()
