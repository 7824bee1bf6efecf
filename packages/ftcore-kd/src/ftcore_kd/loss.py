"""The distillation loss on a teacher's top-k logprobs, computed in chunks of tokens.

Alignment: teacher row ``i`` is the teacher's distribution over token ``i`` given the tokens before
it (vLLM's ``prompt_logprobs`` convention; row 0 has none). The student's logits at position
``i - 1`` predict token ``i``, so they are compared with row ``i``: the same shift as the labels.

For each chunk of tokens the student's full-vocabulary logits are made in float32, reduced to the
cross entropy and the divergence on the teacher's k tokens, and dropped; the backward pass
recomputes them (activation checkpointing), so no ``tokens x vocab`` tensor outlives one chunk.

loss = (kd_alpha * T^2 * sum(KD) + kd_ce_alpha * sum(CE)) / label tokens
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _where_valid(valid: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, terms, torch.zeros_like(terms))


def topk_divergence(
    student: torch.Tensor, teacher: torch.Tensor, beta: float, valid: torch.Tensor
) -> torch.Tensor:
    """Per-token divergence between log-probabilities over the same k tokens ([..., k] -> [...]).

    ``beta`` 0 is KL(teacher || student), 1 is KL(student || teacher); in between, with
    ``M = (1 - beta) p_student + beta p_teacher``: ``beta KL(teacher || M) + (1 - beta) KL(student || M)``.
    Entries where ``valid`` is false (a teacher row with fewer than k tokens) count nothing.
    """
    teacher = teacher.masked_fill(~valid, 0.0)
    student = student.masked_fill(~valid, 0.0)
    p_teacher = _where_valid(valid, teacher.exp())
    p_student = _where_valid(valid, student.exp())
    if beta == 0.0:
        return (p_teacher * (teacher - student)).sum(-1)
    if beta == 1.0:
        return (p_student * (student - teacher)).sum(-1)
    mixture = torch.logsumexp(
        torch.stack([student + math.log(1 - beta), teacher + math.log(beta)]), dim=0
    )
    to_teacher = (p_teacher * (teacher - mixture)).sum(-1)
    to_student = (p_student * (student - mixture)).sum(-1)
    return beta * to_teacher + (1 - beta) * to_student


def _renormalize(logprobs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    masked = logprobs.masked_fill(~valid, float("-inf"))
    return masked - torch.logsumexp(masked, -1, keepdim=True)


def _chunk_sums(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    ce_targets: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    kd_mask: torch.Tensor,
    temperature: float,
    beta: float,
    normalize_topk: bool,
    with_ce: bool,
) -> torch.Tensor:
    """``[sum of CE, sum of KD]`` over one chunk of tokens."""
    logits = (hidden.to(weight.dtype) @ weight.T).float()
    ce = (
        F.cross_entropy(logits, ce_targets, ignore_index=IGNORE_INDEX, reduction="sum")
        if with_ce
        else logits.new_zeros(())
    )
    valid = torch.isfinite(teacher_logprobs) & kd_mask[:, None]
    student = torch.log_softmax(logits / temperature, -1).gather(-1, teacher_ids.clamp_min(0))
    teacher = teacher_logprobs.float()
    if normalize_topk:
        student, teacher = _renormalize(student, valid), _renormalize(teacher, valid)
    kd = topk_divergence(student, teacher, beta, valid).sum()
    return torch.stack([ce, kd])


def kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    teacher_mask: torch.Tensor,
    *,
    kd_alpha: float,
    ce_alpha: float,
    temperature: float = 1.0,
    beta: float = 0.0,
    normalize_topk: bool = False,
    chunk_tokens: int = 1024,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch and its detached parts (``kd_loss``, ``ce_loss``, per label token).

    :param hidden: the student's final hidden states ``[B, L, D]``; ``weight`` its lm_head ``[V, D]``.
    :param teacher_ids: ``[B, L, k]`` token ids of teacher row ``i`` (see the module docstring).
    :param teacher_logprobs: ``[B, L, k]``; ``-inf`` marks padding within a row.
    :param teacher_mask: ``[B, L]``, 1 where row ``i`` holds teacher data.
    """
    targets = labels[:, 1:]
    keep = (targets != IGNORE_INDEX).reshape(-1)
    flat_hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep]
    flat_targets = targets.reshape(-1)[keep]
    k = teacher_ids.shape[-1]
    flat_ids = teacher_ids[:, 1:].reshape(-1, k)[keep]
    flat_logprobs = teacher_logprobs[:, 1:].reshape(-1, k)[keep]
    flat_mask = teacher_mask[:, 1:].reshape(-1)[keep].bool()
    arguments = (temperature, beta, normalize_topk, ce_alpha > 0)
    count = flat_targets.numel()
    step = chunk_tokens or max(count, 1)
    sums = hidden.new_zeros(2, dtype=torch.float32)
    for start in range(0, count, step):
        piece = slice(start, start + step)
        parts = (flat_hidden[piece], weight, flat_targets[piece], flat_ids[piece],
                 flat_logprobs[piece], flat_mask[piece], *arguments)  # fmt: skip
        if chunk_tokens:
            sums = sums + checkpoint(_chunk_sums, *parts, use_reentrant=False)
        else:
            sums = sums + _chunk_sums(*parts)
    denominator = max(count, 1)
    ce_sum, kd_sum = sums[0], sums[1]
    loss = (kd_alpha * temperature**2 * kd_sum + ce_alpha * ce_sum) / denominator
    parts = {"kd_loss": (kd_sum / denominator).detach()}
    if ce_alpha > 0:
        parts["ce_loss"] = (ce_sum / denominator).detach()
    return loss, parts
