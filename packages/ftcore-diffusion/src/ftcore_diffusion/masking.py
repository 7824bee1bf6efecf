"""Noise: which tokens are masked, and the bidirectional attention of a diffusion step.

Per sample, ``t ~ U(0, 1)`` becomes ``u = schedule(t)`` (linear: ``t``; cosine: ``1 - cos(pi t / 2)``),
then ``p = (1 - eps) u + eps``, then ``p`` is mapped linearly into ``[min_mask_ratio, max_mask_ratio]``.
Each eligible token is masked with probability ``p``: never padding, never BOS/EOS/PAD tokens, and
only tokens that carry a label (for SFT data: the answer, never the prompt).
"""

from __future__ import annotations

import math
from typing import Any

import torch

IGNORE_INDEX = -100


def mask_probability(t: torch.Tensor, block: Any) -> torch.Tensor:
    u = t if block.noise_schedule == "linear" else 1 - torch.cos(t * math.pi / 2)
    p = (1 - block.eps) * u + block.eps
    return block.min_mask_ratio + (block.max_mask_ratio - block.min_mask_ratio) * p


def eligible_positions(batch: dict[str, torch.Tensor], special_ids: list[int]) -> torch.Tensor:
    ids = batch["input_ids"]
    eligible = torch.ones_like(ids, dtype=torch.bool)
    if "attention_mask" in batch:
        eligible &= batch["attention_mask"].bool()
    for special in special_ids:
        eligible &= ids != special
    labels = batch.get("labels")
    if labels is not None:
        eligible &= labels != IGNORE_INDEX  # SFT: only answers are noised (prompts are -100)
    return eligible


def apply_noise(
    batch: dict[str, torch.Tensor], block: Any, mask_token_id: int, special_ids: list[int],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(noisy input_ids, masked positions, per-sample p)`` for one batch."""
    ids = batch["input_ids"]
    t = torch.rand(ids.shape[0], generator=generator, device="cpu").to(ids.device)
    p = mask_probability(t, block)
    draws = torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device)
    masked = (draws < p[:, None]) & eligible_positions(batch, special_ids)
    return torch.where(masked, torch.full_like(ids, mask_token_id), ids), masked, p


def segments(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sequence ids per position: packed rows restart ``position_ids``; padding is 0."""
    ids = batch["input_ids"]
    if "position_ids" in batch:
        starts = (batch["position_ids"] == 0).long()
        seg = starts.cumsum(-1)
    else:
        seg = torch.ones_like(ids)
    if "attention_mask" in batch:
        seg = seg * batch["attention_mask"].long()
    return seg


def bidirectional_mask(batch: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """A ``[B, 1, L, L]`` additive mask: every token sees its own sequence in both directions."""
    seg = segments(batch)
    allowed = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0)
    eye = torch.eye(seg.shape[1], dtype=torch.bool, device=seg.device)[None]
    allowed |= eye  # padding attends to itself only, so no row is empty
    mask = torch.zeros(allowed.shape, dtype=dtype, device=seg.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
