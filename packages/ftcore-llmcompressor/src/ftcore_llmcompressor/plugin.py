"""Hook implementations of ftcore-llmcompressor (LLM Compressor is imported only in hooks)."""

from __future__ import annotations

import logging
from typing import Any

from ftcore import hookimpl

log = logging.getLogger("ftcore")


class LLMCompressorPlugin:
    """Keeps a sparse model sparse through fine-tuning, then saves it through LLM Compressor."""

    def __init__(self) -> None:
        self.callback: Any = None
        self.post_recipe: dict[str, Any] = {}

    @hookimpl
    def ftcore_config_schema(self):
        """Add the ``llmcompressor:`` block."""
        from ftcore_llmcompressor.config import LLMCompressorArgs

        return LLMCompressorArgs

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """The block is required, and its recipe must read."""
        if cfg.llmcompressor is None:
            return [("llmcompressor", "required: give at least llmcompressor.recipe")]
        from ftcore.errors import FtcoreError
        from ftcore_llmcompressor.recipe import check_targets, count_modifiers, read_recipe

        try:
            recipe = read_recipe(cfg.llmcompressor.recipe)
            check_targets(recipe)
        except FtcoreError as exc:
            return [("llmcompressor.recipe", str(exc).removeprefix("llmcompressor.recipe: "))]
        if not count_modifiers(recipe):
            return [
                (
                    "llmcompressor.recipe",
                    "holds no modifier; write <name>_stage: {<name>_modifiers: {ModifierName: "
                    "{targets: ..., start: 0}}}",
                )
            ]
        return None

    @hookimpl
    def ftcore_callbacks(self, cfg, model):
        """Drive the recipe's training stages; refuse a recipe that matches nothing."""
        from ftcore_llmcompressor.recipe import (
            check_matches,
            normalise,
            read_recipe,
            split,
            to_recipe,
        )
        from ftcore_llmcompressor.session import SparseTrainingCallback

        self.callback = None
        training, self.post_recipe = split(normalise(read_recipe(cfg.llmcompressor.recipe)))
        check_matches(training, model)
        check_matches(self.post_recipe, model)
        # both loaded now, so that a modifier LLM Compressor refuses fails before training
        training_recipe = to_recipe(training) if training else None
        if self.post_recipe:
            to_recipe(self.post_recipe)
        if cfg.adapter:
            # The sparse base is frozen under LoRA; only merging could fill its zeros, and the
            # save re-applies them after the merge.
            log.info("ftcore: llmcompressor with %s: the sparse base stays frozen", cfg.adapter)
            return None
        self.callback = SparseTrainingCallback(training_recipe) if training_recipe else None
        return [self.callback] if self.callback else None

    @hookimpl
    def ftcore_post_trainer_create(self, cfg, trainer):
        """The session needs the trainer (its model and optimizer) when training begins."""
        if self.callback is not None:
            self.callback.trainer = trainer

    @hookimpl
    def ftcore_save_model(self, cfg, trainer, output_dir):
        """Save merged, re-masked, optionally quantized, through LLM Compressor's save_pretrained."""
        from ftcore_llmcompressor.save import save_sparse

        save_sparse(
            cfg, trainer, output_dir, self.post_recipe, session_ran=self.callback is not None
        )
        return True

    @hookimpl
    def ftcore_cli_commands(self):
        """``ftcore sparsify CONFIG``."""
        return {"sparsify": "ftcore_llmcompressor.cli:sparsify"}
