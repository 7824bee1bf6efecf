"""A grouped linear layer with a LoRA adapter on each expert's weight, in one kernel.

``y[r] = x[src(r)] @ W[e].T + scaling * (x[src(r)] @ A[e].T) @ B[e].T`` over expert-sorted rows
(:mod:`ftcore_moe_kernels.grouped`), with peft's factors of ``target_parameters`` LoRA: ``A``
[E, R, K] (peft's ``rhs``) and ``B`` [E, N, R] (its ``lhs``). The per-expert delta weight
``B[e] @ A[e]`` is never formed.

On the GPU the forward pass is one kernel (:func:`~ftcore_moe_kernels.kernels.grouped_mm_lora`):
each input tile is multiplied by ``W[e]`` and ``A[e]`` while it is loaded, and the epilogue adds
the low-rank term (with ``FTCORE_MOE_LORA_FUSION=epilogue``, ``x @ A[e].T`` comes from a narrow
grouped product before it). The input gradient is the same kernel on the transposed problem,
``g @ W[e] + scaling * (g @ B[e]) @ A[e]``. The factors' gradients are two weight-gradient
kernels over the low-rank rows that those two kernels kept:
``dA[e] = scaling * (g @ B[e]).T @ x`` and ``dB[e] = scaling * g.T @ (x @ A[e].T)``.
"""

from __future__ import annotations

from typing import Any

import torch

from ftcore_moe_kernels.grouped import (
    accumulate_weight_grad,
    collect_input_grad,
    project_rows,
    use_triton,
)


def _forward_with_lora(x, weight, a, b, scaling, offsets, gather, rows):
    """The output rows and the low-rank rows ``x[src(r)] @ a[e].T``, on the chosen backend."""
    if use_triton(x):
        from ftcore_moe_kernels.kernels import grouped_mm_lora

        return grouped_mm_lora(x, weight, a, b, scaling, offsets, gather, rows)
    low = project_rows(x, a, offsets, gather, rows)
    y = project_rows(x, weight, offsets, gather, rows) + scaling * project_rows(
        low, b, offsets, None, rows
    )
    return y, low


class GroupedLoraLinear(torch.autograd.Function):
    """See the module docstring; gradients for ``x``, ``W`` (when it trains), ``A`` and ``B``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor,
                b: torch.Tensor, scaling: float, offsets: torch.Tensor,
                gather: torch.Tensor | None, copies: torch.Tensor | None,
                sorted_rows: int) -> torch.Tensor:  # fmt: skip
        y, low = _forward_with_lora(x, weight, a, b, scaling, offsets, gather, sorted_rows)
        ctx.save_for_backward(x, weight, a, b, low, offsets, gather, copies)
        ctx.scaling, ctx.sorted_rows = scaling, sorted_rows
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, a, b, low, offsets, gather, copies = ctx.saved_tensors
        grad = grad.contiguous()
        needs_x, needs_weight, needs_a, needs_b = ctx.needs_input_grad[:4]
        dx = dweight = da = db = low_grad = None
        if needs_x:  # the transposed problem: its low-rank rows are g @ B[e]
            drows, low_grad = _forward_with_lora(
                grad, weight.transpose(1, 2), b.transpose(1, 2), a.transpose(1, 2), ctx.scaling,
                offsets, None, ctx.sorted_rows,
            )  # fmt: skip
            dx = collect_input_grad(drows, x, gather, copies)
        elif needs_a:
            low_grad = project_rows(grad, b.transpose(1, 2), offsets, None, ctx.sorted_rows)
        if needs_weight:
            dweight = accumulate_weight_grad(x, grad, offsets, gather, weight)
        if needs_a:
            da = accumulate_weight_grad(x, low_grad, offsets, gather, a, ctx.scaling)
        if needs_b:
            db = accumulate_weight_grad(low, grad, offsets, None, b, ctx.scaling)
        return dx, dweight, da, db, None, None, None, None, None


def grouped_lora_linear(x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                        scaling: float, offsets: torch.Tensor, gather: torch.Tensor | None = None,
                        copies: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """See :class:`GroupedLoraLinear`; the other arguments as in
    :func:`~ftcore_moe_kernels.grouped.grouped_linear`."""
    rows = x.shape[0] if gather is None else gather.numel()
    # peft's factors are permuted views with the expert index fastest in memory: every element the
    # kernels load would be its own transaction, outside the loop's asynchronous copies. A copy of
    # the (small) factors per call keeps all loads contiguous; autograd maps the gradients back.
    a, b = a.contiguous(), b.contiguous()
    return GroupedLoraLinear.apply(x, weight, a, b, float(scaling), offsets, gather, copies, rows)
