"""Triton kernels of the grouped linear layers (see :mod:`ftcore_moe_kernels.grouped`).

``grouped_mm``: each program computes a ``BLOCK_M x BLOCK_N`` tile of output rows that all
belong to one expert; input rows are gathered by index inside the kernel. ``grouped_weight_grad``:
each program accumulates one ``BLOCK_N x BLOCK_K`` tile of one expert's weight gradient over that
expert's rows. Weights are read through their strides, so the transposed weight of the backward
pass is a view, not a copy.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_M, BLOCK_N, BLOCK_K = 64, 64, 32


@triton.jit
def _grouped_mm_kernel(
    x_ptr, w_ptr, y_ptr, gather_ptr, block_expert_ptr, block_start_ptr, block_end_ptr,
    N, K, stride_xm, stride_xk, stride_we, stride_wn, stride_wk, stride_ym, stride_yn,
    GATHER: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    block = tl.program_id(0)
    expert = tl.load(block_expert_ptr + block).to(tl.int64)
    start = tl.load(block_start_ptr + block)
    end = tl.load(block_end_ptr + block)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < end
    if GATHER:
        source = tl.load(gather_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    else:
        source = rows.to(tl.int64)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    inner = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + inner
        x = tl.load(x_ptr + source[:, None] * stride_xm + k[None, :] * stride_xk,
                    mask=row_mask[:, None] & (k[None, :] < K), other=0.0)  # fmt: skip
        w = tl.load(w_ptr + expert * stride_we + cols[None, :] * stride_wn + k[:, None] * stride_wk,
                    mask=(cols[None, :] < N) & (k[:, None] < K), other=0.0)  # fmt: skip
        acc += tl.dot(x, w)
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :] * stride_yn,
             acc.to(y_ptr.dtype.element_ty), mask=row_mask[:, None] & (cols[None, :] < N))  # fmt: skip


@triton.jit
def _grouped_weight_grad_kernel(
    x_ptr, g_ptr, dw_ptr, gather_ptr, offsets_ptr, N, K,
    stride_xm, stride_xk, stride_gm, stride_gn, stride_de, stride_dn, stride_dk,
    GATHER: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    expert = tl.program_id(0)
    start = tl.load(offsets_ptr + expert)
    end = tl.load(offsets_ptr + expert + 1)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    inner = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for m0 in range(start, end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_mask = rows < end
        if GATHER:
            source = tl.load(gather_ptr + rows, mask=row_mask, other=0).to(tl.int64)
        else:
            source = rows.to(tl.int64)
        g = tl.load(g_ptr + rows[:, None] * stride_gm + cols[None, :] * stride_gn,
                    mask=row_mask[:, None] & (cols[None, :] < N), other=0.0)  # fmt: skip
        x = tl.load(x_ptr + source[:, None] * stride_xm + inner[None, :] * stride_xk,
                    mask=row_mask[:, None] & (inner[None, :] < K), other=0.0)  # fmt: skip
        acc += tl.dot(tl.trans(g), x)
    expert64 = expert.to(tl.int64)
    tl.store(dw_ptr + expert64 * stride_de + cols[:, None] * stride_dn + inner[None, :] * stride_dk,
             acc, mask=(cols[:, None] < N) & (inner[None, :] < K))  # fmt: skip


def _blocks(offsets: torch.Tensor, block_m: int):
    """Per tile of rows: its expert, first row and end row (tiles never span two experts)."""
    bounds = offsets.tolist()
    experts, starts, ends = [], [], []
    for expert in range(len(bounds) - 1):
        for start in range(bounds[expert], bounds[expert + 1], block_m):
            experts.append(expert)
            starts.append(start)
            ends.append(bounds[expert + 1])
    as_tensor = lambda values: torch.tensor(values, dtype=torch.int32, device=offsets.device)  # noqa: E731
    return as_tensor(experts), as_tensor(starts), as_tensor(ends)


def grouped_mm(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor,
               gather: torch.Tensor | None, rows: int) -> torch.Tensor:  # fmt: skip
    """``y[r] = x[src(r)] @ weight[e(r)].T`` for ``rows`` expert-sorted rows; ``weight`` [E, N, K]."""
    n, k = weight.shape[1], weight.shape[2]
    y = x.new_empty(rows, n)
    if rows == 0:
        return y
    experts, starts, ends = _blocks(offsets, BLOCK_M)
    grid = (experts.numel(), triton.cdiv(n, BLOCK_N))
    _grouped_mm_kernel[grid](
        x, weight, y, gather if gather is not None else starts, experts, starts, ends, n, k,
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), weight.stride(2),
        y.stride(0), y.stride(1),
        GATHER=gather is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
    )  # fmt: skip
    return y


def grouped_weight_grad(x: torch.Tensor, grad: torch.Tensor, offsets: torch.Tensor,
                        gather: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:  # fmt: skip
    """``dweight[e] = grad[rows of e].T @ x[src(rows of e)]`` in float32; ``shape`` is [E, N, K]."""
    n_experts, n, k = shape
    dweight = torch.zeros(shape, dtype=torch.float32, device=x.device)
    offsets32 = offsets.to(torch.int32)
    grid = (n_experts, triton.cdiv(n, BLOCK_N), triton.cdiv(k, BLOCK_K))
    _grouped_weight_grad_kernel[grid](
        x, grad, dweight, gather if gather is not None else offsets32, offsets32, n, k,
        x.stride(0), x.stride(1), grad.stride(0), grad.stride(1),
        dweight.stride(0), dweight.stride(1), dweight.stride(2),
        GATHER=gather is not None, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
    )  # fmt: skip
    return dweight
