"""ftcore: a minimal fine-tuning core with a pluggy plugin host.

Importing ``ftcore`` is cheap: no torch, transformers or pydantic is imported here.
"""

from __future__ import annotations

import pluggy

__version__ = "0.3.3"

hookimpl = pluggy.HookimplMarker("ftcore")
"""Marker for hook implementations: ``@hookimpl def ftcore_configure(cfg): ...``."""

__all__ = ["__version__", "hookimpl"]
