"""Save the fine-tuned sparse model: merged (for LoRA), re-masked, optionally quantized, compressed."""

from __future__ import annotations

import logging
import shutil
import tempfile
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


def _write_recipe_history(model: Any, path: Path, session_ran: bool) -> Path:
    """Write the recipe history so far to ``path``: the base model's ``recipe.yaml`` (the stages
    of ``ftcore sparsify``, say), then the stage of the session that fine-tuned, if one ran (none
    does under LoRA)."""
    from llmcompressor import active_session
    from llmcompressor.transformers.utils.helpers import infer_recipe_from_model_path

    existing = infer_recipe_from_model_path(model.name_or_path)
    if session_ran:
        active_session().lifecycle.recipe.yaml(file_path=str(path), existing_recipe_path=existing)
    elif existing:
        shutil.copyfile(existing, path)
    else:
        path.write_text("{}\n")
    return path


def _append_session_recipe(history: Path, path: Path) -> None:
    """Rewrite ``path`` as ``history`` followed by the active session's stages."""
    from llmcompressor import active_session

    active_session().lifecycle.recipe.yaml(file_path=str(path), existing_recipe_path=str(history))


def save_sparse(
    cfg: Any, trainer: Any, output_dir: str, post_recipe: dict[str, Any], session_ran: bool
) -> None:
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
    with tempfile.TemporaryDirectory() as scratch:
        history = None
        if post_recipe:
            # oneshot starts a session of its own: keep the fine-tuning session's stage first
            history = _write_recipe_history(model, Path(scratch) / "recipe.yaml", session_ran)
            quantize(model, post_recipe)
        modify_save_pretrained(model)
        staging = staging_dir(output_dir)
        model.save_pretrained(str(staging), save_compressed=cfg.llmcompressor.save_compressed)
        if history is not None:
            _append_session_recipe(history, staging / "recipe.yaml")
        trainer.processing_class.save_pretrained(str(staging))
    publish(staging, output_dir)
    size = sum(p.stat().st_size for p in Path(output_dir).glob("*.safetensors"))
    log.info("ftcore: saved the sparse model to %s (%.1f MB of weights)", output_dir, size / 1e6)
