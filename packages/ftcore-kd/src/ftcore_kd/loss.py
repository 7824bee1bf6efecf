"""The distillation loss on a teacher's top-k logprobs, computed in chunks of tokens.

Alignment: teacher row ``i`` is the teacher's distribution over token ``i`` given the tokens before
it (vLLM's ``prompt_logprobs`` convention; row 0 has none). The student's logits at position
``i - 1`` predict token ``i``, so they are compared with row ``i``: the same shift as the labels.

For each chunk of tokens the student's full-vocabulary logits are made in float32, reduced to the
cross entropy and the divergence on the teacher's k tokens, and their gradient with respect to the
logits is formed right away (softmax minus one-hot for the cross entropy; for the divergence, the
gradient on the k log-probabilities, by autograd on those small tensors, spread through the
log-softmax). That gradient becomes the gradients of the hidden states and the lm_head weight
before the next chunk, so no ``tokens x vocab`` tensor outlives one chunk and nothing is recomputed
in the backward pass. ``chunk_tokens: 0`` is the naive reference: autograd on the whole batch's
logits at once.

loss = (kd_alpha * T^2 * sum(KD) + kd_ce_alpha * sum(CE)) / label tokens
"""

from __future__ import annotations

import importlib.util
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

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


def _naive_sums(
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
    softcap: float | None = None,
) -> torch.Tensor:
    """``[sum of CE, sum of KD]`` by autograd on the full logits (the ``chunk_tokens: 0`` reference)."""
    logits = (hidden.to(weight.dtype) @ weight.T).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
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


class _Settings(NamedTuple):
    ce_scale: float
    kd_scale: float
    temperature: float
    beta: float
    normalize_topk: bool
    chunk: int
    softcap: float | None
    with_grad: bool  # gradients are formed (training); false in evaluation


#: Which implementation makes the vocabulary-wide passes of a chunk: ``auto`` (Triton on CUDA
#: when triton is installed, PyTorch otherwise); ``triton`` or ``reference`` force one (tests).
BACKEND = "auto"
_HAS_TRITON = importlib.util.find_spec("triton") is not None
# mm/addmm with a float32 output for bfloat16 inputs (CUDA) arrived in torch 2.8.
_HAS_MM_OUT_DTYPE = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 8)


def _use_triton(logits: torch.Tensor) -> bool:
    if BACKEND != "auto":
        return BACKEND == "triton"
    return logits.is_cuda and _HAS_TRITON


def _topk_part(
    student: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    valid: torch.Tensor,
    beta: float,
    normalize_topk: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's summed divergence and its gradient on the student's k log-probabilities."""
    with torch.enable_grad():
        student = student.detach().requires_grad_(True)
        teacher = teacher_logprobs.float()
        topk_student = student
        if normalize_topk:
            topk_student, teacher = _renormalize(student, valid), _renormalize(teacher, valid)
        kd = topk_divergence(topk_student, teacher, beta, valid).sum()
        (grad_topk,) = torch.autograd.grad(kd, student)
    return kd.detach(), grad_topk


def _chunk_torch(logits, targets, ids, teacher_logprobs, valid, s: _Settings):
    """``(CE sum, KD sum, gradient on the logits or None)`` by float32 PyTorch passes."""
    logits = logits.float()
    if s.softcap is not None:  # as the model does (gemma2): the loss sees capped logits
        logits = torch.tanh(logits / s.softcap).mul_(s.softcap)
    grad_logits = torch.zeros_like(logits) if s.with_grad else None
    ce = logits.new_zeros(())
    if s.ce_scale:
        log_z = torch.logsumexp(logits, -1, keepdim=True)
        ce = (log_z[:, 0] - logits.gather(-1, targets[:, None])[:, 0]).sum()
        if s.with_grad:
            grad_logits += (logits - log_z).exp_()
            grad_logits.scatter_add_(-1, targets[:, None], torch.full_like(log_z, -1.0))
            grad_logits *= s.ce_scale
    scaled = logits.div_(s.temperature)  # the logits are not needed unscaled any more
    log_z_t = torch.logsumexp(scaled, -1, keepdim=True)
    student = scaled.gather(-1, ids) - log_z_t
    kd, grad_topk = _topk_part(student, teacher_logprobs, valid, s.beta, s.normalize_topk)
    if not s.with_grad:
        return ce, kd, None
    # d s_j / d logits = (onehot_j - softmax(logits / T)) / T
    probs = (scaled - log_z_t).exp_()
    spread = probs.mul_(-grad_topk.sum(-1, keepdim=True)).scatter_add_(-1, ids, grad_topk)
    grad_logits += spread.mul_(s.kd_scale / s.temperature)
    if s.softcap is not None:  # d cap·tanh(z/cap) / dz = 1 - tanh²; scaled = capped / T
        grad_logits *= 1 - (scaled * (s.temperature / s.softcap)) ** 2
    return ce, kd, grad_logits


def _chunk_triton(logits, targets, ids, teacher_logprobs, valid, s: _Settings):
    """As :func:`_chunk_torch`; the gradient overwrites ``logits`` (see :mod:`ftcore_kd.rowwise`)."""
    from ftcore_kd.rowwise import log_normalizers, write_dense_gradient

    log_z, log_z_t = log_normalizers(logits, s.temperature, s.softcap)
    positions = torch.cat([ids, targets[:, None]], -1)  # the teacher's k tokens, then the target
    z = logits.gather(-1, positions).float()
    if s.softcap is not None:
        z = torch.tanh(z / s.softcap) * s.softcap
    ce = (log_z - z[:, -1]).sum() if s.ce_scale else z.new_zeros(())
    student = z[:, :-1] / s.temperature - log_z_t[:, None]
    kd, grad_topk = _topk_part(student, teacher_logprobs, valid, s.beta, s.normalize_topk)
    if not s.with_grad:
        return ce, kd, None
    kd_coef = s.kd_scale / s.temperature
    dense_kd = kd_coef * grad_topk.sum(-1)
    write_dense_gradient(logits, log_z, log_z_t, s.ce_scale, dense_kd, s.temperature, s.softcap)
    # The k + 1 sparse entries, in float32 from their logits; a token may appear twice (the
    # target among the teacher's tokens), so each entry gets the sum of its duplicates' terms.
    sparse = torch.cat([kd_coef * grad_topk, torch.full_like(z[:, :1], -s.ce_scale)], -1)
    duplicates = positions[:, :, None] == positions[:, None, :]
    values = (
        s.ce_scale * (z - log_z[:, None]).exp()
        - dense_kd[:, None] * (z / s.temperature - log_z_t[:, None]).exp()
        + (duplicates * sparse[:, None, :]).sum(-1)
    )
    if s.softcap is not None:
        values *= 1 - (z / s.softcap) ** 2
    return ce, kd, logits.scatter_(-1, positions, values.to(logits.dtype))


def _accumulate_weight_grad(grad_weight, grad_logits, h):
    """``grad_weight += grad_logits.T @ h`` in float32, without a float32 temporary on CUDA."""
    if grad_logits.is_cuda and grad_logits.dtype != torch.float32 and _HAS_MM_OUT_DTYPE:
        torch.addmm(grad_weight, grad_logits.T, h, out_dtype=torch.float32, out=grad_weight)
    else:
        grad_weight += (grad_logits.T @ h).float()


class _FusedKD(torch.autograd.Function):
    """The loss of all chunks; the gradients are computed in the forward pass (module docstring)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, teacher_ids, teacher_logprobs, kd_mask, s):
        s = s._replace(with_grad=s.with_grad and (hidden.requires_grad or weight.requires_grad))
        grad_hidden = torch.zeros_like(hidden) if s.with_grad and hidden.requires_grad else None
        grad_weight = (
            torch.zeros_like(weight, dtype=torch.float32)
            if s.with_grad and weight.requires_grad
            else None
        )
        sums = torch.zeros(2, device=hidden.device, dtype=torch.float32)
        for start in range(0, targets.numel(), s.chunk):
            piece = slice(start, start + s.chunk)
            h = hidden[piece].to(weight.dtype)
            logits = h @ weight.T
            chunk = _chunk_triton if _use_triton(logits) else _chunk_torch
            valid = torch.isfinite(teacher_logprobs[piece]) & kd_mask[piece, None]
            ce, kd, grad_logits = chunk(logits, targets[piece], teacher_ids[piece].clamp_min(0),
                                        teacher_logprobs[piece], valid, s)  # fmt: skip
            sums[0] += ce
            sums[1] += kd
            if grad_logits is None:
                continue  # evaluation: the loss only
            grad_logits = grad_logits.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[piece] = (grad_logits @ weight).to(hidden.dtype)
            if grad_weight is not None:
                _accumulate_weight_grad(grad_weight, grad_logits, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        loss = s.ce_scale * sums[0] + s.kd_scale * sums[1]
        ctx.mark_non_differentiable(sums)
        return loss, sums

    @staticmethod
    def backward(ctx, grad_loss, _grad_sums):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight * grad_loss
        return grad_hidden, grad_weight, None, None, None, None, None


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
    chunk_tokens: int = 2048,
    softcap: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch and its detached parts (``kd_loss``, ``ce_loss``, per label token).

    :param hidden: the student's final hidden states ``[B, L, D]``; ``weight`` its lm_head ``[V, D]``.
    :param teacher_ids: ``[B, L, k]`` token ids of teacher row ``i`` (see the module docstring).
    :param teacher_logprobs: ``[B, L, k]``; ``-inf`` marks padding within a row.
    :param teacher_mask: ``[B, L]``, 1 where row ``i`` holds teacher data.
    :param softcap: the model's final-logit soft-capping (gemma2), applied before everything.
    """
    targets = labels[:, 1:]
    keep = (targets != IGNORE_INDEX).reshape(-1)
    flat_hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep]
    flat_targets = targets.reshape(-1)[keep]
    k = teacher_ids.shape[-1]
    flat_ids = teacher_ids[:, 1:].reshape(-1, k)[keep]
    flat_logprobs = teacher_logprobs[:, 1:].reshape(-1, k)[keep]
    flat_mask = teacher_mask[:, 1:].reshape(-1)[keep].bool()
    denominator = max(flat_targets.numel(), 1)
    ce_scale = ce_alpha / denominator
    kd_scale = kd_alpha * temperature**2 / denominator
    teacher = (flat_ids, flat_logprobs, flat_mask)
    if chunk_tokens:
        settings = _Settings(ce_scale, kd_scale, temperature, beta, normalize_topk, chunk_tokens,
                             softcap, torch.is_grad_enabled())  # fmt: skip
        loss, sums = _FusedKD.apply(flat_hidden, weight, flat_targets, *teacher, settings)
    else:
        sums = _naive_sums(flat_hidden, weight, flat_targets, *teacher, temperature, beta,
                           normalize_topk, ce_alpha > 0, softcap)  # fmt: skip
        loss = ce_scale * sums[0] + kd_scale * sums[1]
    ce_sum, kd_sum = sums[0], sums[1]
    parts = {"kd_loss": (kd_sum / denominator).detach()}
    if ce_alpha > 0:
        parts["ce_loss"] = (ce_sum / denominator).detach()
    return loss, parts
