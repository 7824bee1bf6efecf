"""Triton kernels of :mod:`ftcore_moe_kernels.combine`. The forward runs one program per token and
slice of the hidden size, adding the token's ``k`` rows one after the other; the backward one
program per token, its ``k`` rows loaded together as a ``[k, BLOCK_H]`` tile (its reduction, a
dot product per row, stays within a warp), the hidden size walked in ``BLOCK_H`` steps."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: The forward's slice of the hidden size per program: 8 values a thread at 4 warps.
_FORWARD_BLOCK_H = 1024
#: The backward's step along the hidden size, over a ``[k, BLOCK_H]`` tile.
_BACKWARD_BLOCK_H = 256


@triton.jit
def _slots(rows_ptr, weights_ptr, token, top_k, K_PAD: tl.constexpr):
    """This token's rows (int64), their weights (float32) and the mask of the real slots."""
    slot = tl.arange(0, K_PAD)
    real = slot < top_k
    rows = tl.load(rows_ptr + token * top_k + slot, mask=real, other=0).to(tl.int64)
    weight = tl.load(weights_ptr + token * top_k + slot, mask=real, other=0.0).to(tl.float32)
    return rows, weight, real


@triton.jit
def _combine_forward_kernel(
    y_ptr, rows_ptr, weights_ptr, out_ptr, hidden, stride_y, stride_out,
    WEIGHTED: tl.constexpr, TOP_K: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    # One row at a time into a 1-D sum: a [k, BLOCK_H] tile summed over k made every step of the
    # hidden size wait at a barrier for a cross-warp reduction (about 0.5 TB/s on an H200).
    token = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    in_row = cols < hidden
    total = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for slot in tl.static_range(TOP_K):
        entry = token * TOP_K + slot
        row = tl.load(rows_ptr + entry).to(tl.int64)
        y = tl.load(y_ptr + row * stride_y + cols, mask=in_row, other=0.0).to(tl.float32)
        if WEIGHTED:
            y = y * tl.load(weights_ptr + entry).to(tl.float32)
        total += y
    tl.store(out_ptr + token * stride_out + cols, total.to(out_ptr.dtype.element_ty), mask=in_row)


@triton.jit
def _combine_backward_kernel(
    y_ptr, rows_ptr, weights_ptr, grad_ptr, dy_ptr, dweights_ptr, hidden, top_k,
    stride_y, stride_grad, stride_dy, K_PAD: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0).to(tl.int64)
    rows, weight, real = _slots(rows_ptr, weights_ptr, token, top_k, K_PAD)
    dots = tl.zeros((K_PAD,), dtype=tl.float32)
    for h0 in range(0, hidden, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        in_row = cols < hidden
        mask = real[:, None] & in_row[None, :]
        grad = tl.load(grad_ptr + token * stride_grad + cols, mask=in_row, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + rows[:, None] * stride_y + cols[None, :], mask=mask, other=0.0)
        dots += tl.sum(y.to(tl.float32) * grad[None, :], axis=1)
        spread = (weight[:, None] * grad[None, :]).to(dy_ptr.dtype.element_ty)
        tl.store(dy_ptr + rows[:, None] * stride_dy + cols[None, :], spread, mask=mask)
    slot = tl.arange(0, K_PAD)
    tl.store(dweights_ptr + token * top_k + slot, dots, mask=real)


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def combine_forward(
    y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """``out[t] = sum_j weights[t, j] * y[rows[t, j]]`` in float32, stored in ``y``'s dtype."""
    tokens, top_k = rows.shape
    y, rows = _unit_stride(y), rows.contiguous()
    out = y.new_empty(tokens, y.shape[-1])
    if tokens == 0:
        return out
    weighted = weights is not None
    _combine_forward_kernel[(tokens, triton.cdiv(y.shape[-1], _FORWARD_BLOCK_H))](
        y, rows, weights.contiguous() if weighted else rows, out, y.shape[-1],
        y.stride(0), out.stride(0), WEIGHTED=weighted, TOP_K=top_k, BLOCK_H=_FORWARD_BLOCK_H,
    )  # fmt: skip
    return out


def combine_backward(y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor,
                     grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``dy`` (``y``'s shape and dtype) and ``dweights`` (float32, ``[T, k]``)."""
    tokens, top_k = rows.shape
    y, grad = _unit_stride(y), _unit_stride(grad)
    rows, weights = rows.contiguous(), weights.contiguous()
    dy = torch.empty_like(y)
    dweights = torch.empty(tokens, top_k, dtype=torch.float32, device=y.device)
    if tokens == 0:
        return dy, dweights
    _combine_backward_kernel[(tokens,)](
        y, rows, weights, grad, dy, dweights, y.shape[-1], top_k,
        y.stride(0), grad.stride(0), dy.stride(0),
        K_PAD=triton.next_power_of_2(top_k), BLOCK_H=_BACKWARD_BLOCK_H,
    )  # fmt: skip
    return dy, dweights
