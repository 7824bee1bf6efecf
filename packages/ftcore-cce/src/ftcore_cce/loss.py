"""The causal-LM loss from hidden states and the lm_head weight, without the logits tensor.

On CUDA the loss is Cut Cross Entropy's Triton kernel (``cut_cross_entropy.linear_cross_entropy``);
elsewhere a chunked reference computes the same sum a slice of tokens at a time, recomputing each
slice's logits in the backward pass, so no ``tokens x vocab`` tensor outlives one slice either.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
CHUNK_TOKENS = 1024


def _apply_softcap(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    return logits if softcap is None else torch.tanh(logits / softcap) * softcap


def _slice_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    logits = _apply_softcap((hidden.to(weight.dtype) @ weight.T).float(), softcap)
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_linear_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
) -> torch.Tensor:
    """Sum of the cross entropy of ``hidden @ weight.T`` against ``targets`` (flat, no ignored rows)."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_tokens):
        piece = slice(start, start + chunk_tokens)
        total = total + checkpoint(
            _slice_loss_sum, hidden[piece], weight, targets[piece], softcap, use_reentrant=False
        )
    return total


def _kernel_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    from cut_cross_entropy import linear_cross_entropy

    if hidden.dtype != weight.dtype:  # mixed precision: autocast leaves the weight in float32
        weight = weight.to(hidden.dtype)
    return linear_cross_entropy(
        hidden, weight, targets, ignore_index=IGNORE_INDEX, softcap=softcap, reduction="sum"
    ).float()


def causal_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor | None,
    shift_labels: torch.Tensor | None = None,
    softcap: float | None = None,
    num_items_in_batch: Any = None,
) -> torch.Tensor:
    """What ``transformers``' causal-LM loss gives for ``lm_head(hidden)``, with the same reduction.

    Position ``i`` predicts ``labels[i + 1]`` (or ``shift_labels[i]`` when given, as context
    parallelism does); ``-100`` is ignored. The sum is divided by ``num_items_in_batch`` when the
    trainer passes it (so gradient accumulation weighs every label token alike), else by the
    number of label tokens.
    """
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    targets = shift_labels.reshape(-1).to(hidden.device)
    keep = targets != IGNORE_INDEX
    flat = hidden.reshape(-1, hidden.shape[-1])[keep]
    targets = targets[keep]
    if flat.is_cuda:
        total = _kernel_loss_sum(flat, weight, targets, softcap)
    else:
        total = chunked_linear_cross_entropy_sum(flat, weight, targets, softcap)
    if num_items_in_batch is not None:
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch
    # A micro-batch with no label token gives 0/0 = nan, as the transformers loss does.
    return total / keep.sum()
