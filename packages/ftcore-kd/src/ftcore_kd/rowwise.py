"""Triton kernels for the vocabulary-wide passes of one chunk of the KD loss (see :mod:`ftcore_kd.loss`).

Each program owns one row of a chunk's logits and walks the vocabulary in blocks:

- ``log_normalizers``: one read of the logits gives ``logsumexp(z)`` and ``logsumexp(z / T)``
  (online max and sum, in float32).
- ``write_dense_gradient``: one read and one write turn the logits, in place, into the dense part of
  the gradient, ``ce_scale * softmax(z) - c_row * softmax(z / T)``.

``z`` is the soft-capped logit when the model caps (``cap * tanh(raw / cap)``), and the dense
gradient is then multiplied by ``1 - (z / cap)^2``. The sparse part of the gradient (the target
token and the teacher's k tokens) is a few entries per row and is written by the caller.
Against the float32 PyTorch version this reads the chunk twice and writes it once, in its own
dtype, instead of some twenty float32 passes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 2048
NUM_WARPS = 8


@triton.jit
def _capped(raw, softcap, SOFTCAP: tl.constexpr):
    if SOFTCAP:
        return softcap * (2.0 * tl.sigmoid(2.0 * raw / softcap) - 1.0)  # cap * tanh(raw / cap)
    return raw


@triton.jit
def _log_normalizers_kernel(
    logits_ptr, log_z_ptr, log_z_t_ptr, V, stride_row, inv_temperature, softcap,
    SOFTCAP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    m = float("-inf")
    s = 0.0
    m_t = float("-inf")
    s_t = 0.0
    for start in range(0, V, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < V
        raw = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
        z = tl.where(inside, _capped(raw, softcap, SOFTCAP), float("-inf"))
        new_m = tl.maximum(m, tl.max(z, 0))
        s = s * tl.exp(m - new_m) + tl.sum(tl.exp(z - new_m), 0)
        m = new_m
        z_t = z * inv_temperature
        new_m_t = tl.maximum(m_t, tl.max(z_t, 0))
        s_t = s_t * tl.exp(m_t - new_m_t) + tl.sum(tl.exp(z_t - new_m_t), 0)
        m_t = new_m_t
    tl.store(log_z_ptr + row, m + tl.log(s))
    tl.store(log_z_t_ptr + row, m_t + tl.log(s_t))


@triton.jit
def _dense_gradient_kernel(
    logits_ptr, log_z_ptr, log_z_t_ptr, kd_coef_ptr, V, stride_row, ce_scale, inv_temperature,
    softcap, SOFTCAP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    log_z = tl.load(log_z_ptr + row)
    log_z_t = tl.load(log_z_t_ptr + row)
    kd_coef = tl.load(kd_coef_ptr + row)
    for start in range(0, V, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < V
        raw = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
        z = _capped(raw, softcap, SOFTCAP)
        grad = ce_scale * tl.exp(z - log_z) - kd_coef * tl.exp(z * inv_temperature - log_z_t)
        if SOFTCAP:
            grad = grad * (1.0 - (z / softcap) * (z / softcap))
        tl.store(base + cols, grad.to(logits_ptr.dtype.element_ty), mask=inside)


def log_normalizers(
    logits: torch.Tensor, temperature: float, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logsumexp(z), logsumexp(z / T))`` per row of ``[N, V]`` logits, in float32."""
    rows, vocab = logits.shape
    log_z = torch.empty(rows, device=logits.device, dtype=torch.float32)
    log_z_t = torch.empty_like(log_z)
    _log_normalizers_kernel[(rows,)](
        logits, log_z, log_z_t, vocab, logits.stride(0), 1.0 / temperature, softcap or 1.0,
        SOFTCAP=softcap is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )  # fmt: skip
    return log_z, log_z_t


def write_dense_gradient(
    logits: torch.Tensor,
    log_z: torch.Tensor,
    log_z_t: torch.Tensor,
    ce_scale: float,
    kd_coef: torch.Tensor,
    temperature: float,
    softcap: float | None,
) -> torch.Tensor:
    """Overwrite ``logits`` with ``ce_scale * softmax(z) - kd_coef[row] * softmax(z / T)``."""
    rows, vocab = logits.shape
    _dense_gradient_kernel[(rows,)](
        logits, log_z, log_z_t, kd_coef.float().contiguous(), vocab, logits.stride(0),
        float(ce_scale), 1.0 / temperature, softcap or 1.0, SOFTCAP=softcap is not None,
        BLOCK=BLOCK, num_warps=NUM_WARPS,
    )  # fmt: skip
    return logits
