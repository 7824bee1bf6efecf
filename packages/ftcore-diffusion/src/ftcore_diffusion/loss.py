"""The masked diffusion loss and its metrics.

The model sees the noisy sequence with bidirectional attention; as in LLaDA-style adaptation of
autoregressive models, the logits are shifted right by one so that position ``i`` predicts token
``i``. On masked positions ``ce_i = CE(logits_i, x_i)`` (float32), weighted ``w_i = ce_i / p`` with
importance weighting; the loss is the batch mean of ``sum(w) / (tokens that carry a label)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from ftcore_diffusion.masking import IGNORE_INDEX, apply_noise, bidirectional_mask


@contextmanager
def non_causal(model: Any) -> Iterator[None]:
    """Attention layers attend both ways while no mask is passed (SDPA keeps its fast kernels)."""
    layers = [m for m in model.modules() if getattr(m, "is_causal", None) is True]
    for layer in layers:
        layer.is_causal = False
    try:
        yield
    finally:
        for layer in layers:
            layer.is_causal = True


def _one_full_sequence_per_row(batch: dict[str, torch.Tensor]) -> bool:
    if "attention_mask" in batch and not bool(batch["attention_mask"].all()):
        return False
    return "position_ids" not in batch or not bool((batch["position_ids"][:, 1:] == 0).any())


def bidirectional_logits(
    model: Any, noisy: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The model's logits with bidirectional attention (unshifted).

    Rows without padding or packing need no mask: the attention layers are switched to
    non-causal instead, which keeps SDPA on its fused kernels. Otherwise a 4D mask keeps every
    token inside its own sequence.
    """
    kwargs = {"position_ids": batch["position_ids"]} if "position_ids" in batch else {}
    if _one_full_sequence_per_row(batch):
        with non_causal(model):
            return model(input_ids=noisy, use_cache=False, **kwargs).logits
    mask = bidirectional_mask(batch, next(model.parameters()).dtype)
    return model(input_ids=noisy, attention_mask=mask, use_cache=False, **kwargs).logits


def shifted_logits(model: Any, noisy: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Bidirectional logits shifted so position ``i`` predicts token ``i``."""
    logits = bidirectional_logits(model, noisy, batch)
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _predictions(
    model: Any, noisy: torch.Tensor, batch: dict[str, torch.Tensor], masked: torch.Tensor
) -> torch.Tensor:
    """Float32 logits at the masked positions only (position ``i`` reads the output at ``i - 1``)."""
    logits = bidirectional_logits(model, noisy, batch)
    rows, cols = masked.nonzero(as_tuple=True)
    return logits[rows, (cols - 1).clamp(min=0)].float()


def diffusion_loss(
    model: Any, batch: dict[str, torch.Tensor], block: Any, mask_token_id: int,
    special_ids: list[int], generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    ids = batch["input_ids"]
    noisy, masked, p = apply_noise(batch, block, mask_token_id, special_ids, generator)
    selected = _predictions(model, noisy, batch, masked)  # [masked tokens, vocab]
    targets = ids[masked]
    ce_selected = F.cross_entropy(selected, targets, reduction="none")
    ce = torch.zeros(ids.shape, dtype=ce_selected.dtype, device=ids.device)
    ce[masked] = ce_selected
    weights = ce / p[:, None] if block.importance_weighting else ce
    labels = batch.get("labels")
    trainable = (
        (labels != IGNORE_INDEX) if labels is not None else torch.ones_like(ids, dtype=torch.bool)
    )
    if "attention_mask" in batch:
        trainable &= batch["attention_mask"].bool()
    per_sample = weights.sum(-1) / trainable.sum(-1).clamp(min=1)
    loss = per_sample.mean()
    count = int(masked.sum())
    with torch.no_grad():
        correct = int((selected.argmax(-1) == targets).sum())
        metrics = {
            "ce_loss": float(ce_selected.sum() / max(count, 1)),
            "accuracy": correct / max(count, 1),
            "mask_ratio": float(masked.sum() / trainable.sum().clamp(min=1)),
            "num_masked_tokens": float(count),
            "avg_p_mask": float(p.mean()),
            "importance_weight_avg": float((1 / p).mean()) if block.importance_weighting else 1.0,
        }
    return loss, metrics
