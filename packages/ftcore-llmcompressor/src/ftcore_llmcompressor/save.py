"""Save the fine-tuned sparse model: merged (for LoRA), re-masked, optionally quantized, compressed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ftcore.dist import is_main_process
from ftcore.errors import FtcoreError
from ftcore.saving import publish, staging_dir
from ftcore_llmcompressor.sparsity import apply_masks, masks_of

log = logging.getLogger("ftcore")


def quantize(model: Any, post_recipe: dict[str, Any]) -> None:
    """Run the recipe's quantization stage on the trained model (data-free schemes)."""
    from llmcompressor import oneshot

    from ftcore_llmcompressor.recipe import to_recipe

    try:
        oneshot(model=model, recipe=to_recipe(post_recipe))
    except (RuntimeError, ValueError) as exc:
        raise FtcoreError(
            f"llmcompressor: the quantization stage failed ({exc}); the trained weights are in the "
            "last checkpoint. Check the scheme against the model's sizes (group sizes must divide "
            "the hidden size)"
        ) from exc


def save_sparse(cfg: Any, trainer: Any, output_dir: str, post_recipe: dict[str, Any]) -> None:
    from llmcompressor.transformers.compression.compressed_tensors_utils import (
        modify_save_pretrained,
    )

    trainer.accelerator.wait_for_everyone()
    if not is_main_process():
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        masks = masks_of(model)  # the base weights' zeros, before the dense LoRA delta lands
        model = model.merge_and_unload()
        apply_masks(model, masks)
        log.info("ftcore: merged the LoRA adapter into the sparse base and kept its zeros")
    model.config.use_cache = True
    if post_recipe:
        quantize(model, post_recipe)
    modify_save_pretrained(model)
    staging = staging_dir(output_dir)
    model.save_pretrained(str(staging), save_compressed=cfg.llmcompressor.save_compressed)
    trainer.processing_class.save_pretrained(str(staging))
    publish(staging, output_dir)
    size = sum(p.stat().st_size for p in Path(output_dir).glob("*.safetensors"))
    log.info("ftcore: saved the sparse model to %s (%.1f MB of weights)", output_dir, size / 1e6)
