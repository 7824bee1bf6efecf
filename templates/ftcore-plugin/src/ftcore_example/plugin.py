"""Hook implementations: thin wiring from config keys to the code in ``params.py``.

This module is the entry point, so it must import cheaply: no torch at module level.
"""

from __future__ import annotations

import logging

from ftcore import hookimpl

log = logging.getLogger("ftcore")


@hookimpl
def ftcore_config_schema():
    """Add the ``example_*`` keys."""
    from ftcore_example.config import ExampleArgs

    return ExampleArgs


@hookimpl
def ftcore_validate_config(cfg):
    """Freezing embeddings is pointless when only a LoRA adapter is trained."""
    if cfg.example_freeze_embeddings and cfg.adapter:
        return [
            (
                "example_freeze_embeddings",
                f"has no effect with adapter: {cfg.adapter} (the base weights are already frozen); "
                "remove it",
            )
        ]
    return None


@hookimpl
def ftcore_configure(cfg):
    """Say what the plugin will do, once the config is valid."""
    action = (
        "freeze the input embeddings"
        if cfg.example_freeze_embeddings
        else "leave weights as they are"
    )
    log.info("example plugin: will %s", action)


@hookimpl
def ftcore_post_model_load(cfg, model, tokenizer):
    """Freeze the embeddings if asked, then report trainable parameters."""
    from ftcore_example.params import count_parameters, freeze_input_embeddings

    if cfg.example_freeze_embeddings:
        freeze_input_embeddings(model)
    if cfg.example_report:
        trainable, total = count_parameters(model)
        log.info("example plugin: %d of %d parameters are trainable", trainable, total)


@hookimpl
def ftcore_cli_commands():
    """Add ``ftcore example-count MODEL_DIR`` (imported only when it runs)."""
    return {"example-count": "ftcore_example.cli:count"}
