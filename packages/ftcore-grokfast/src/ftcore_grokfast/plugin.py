"""Hook implementations of ftcore-grokfast (imports nothing heavy at module level)."""

from __future__ import annotations

from ftcore import hookimpl


@hookimpl
def ftcore_config_schema():
    """Add ``grokfast_alpha`` and ``grokfast_lamb``."""
    from ftcore_grokfast.config import GrokfastArgs

    return GrokfastArgs


@hookimpl
def ftcore_callbacks(cfg, model):
    """Filter gradients before every optimizer step."""
    from ftcore_grokfast.callback import GrokfastCallback

    return [GrokfastCallback(cfg.grokfast_alpha, cfg.grokfast_lamb)]
