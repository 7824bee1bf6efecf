"""Grouped linear layers over tokens sorted by expert (the ScatterMoE scheme).

Rows are in expert order: expert ``e`` owns rows ``offsets[e]:offsets[e + 1]``. Row ``r`` of the
output is ``x[src(r)] @ weight[e(r)].T``, where ``src`` gathers the input rows (a token's hidden
state is read straight from its place, never copied out per expert) or is the identity. The
backward pass gives ``dx`` and ``dweight`` per expert. When each source row is read by exactly
``k`` rows (a token's top-k experts) and ``copies [rows of x, k]`` says which, ``dx`` is a gather
and a sum over the ``k`` copies; otherwise the copies are scattered back with atomic adds (slower:
they were a fifth of an MoE block's time on an H200).

Two backends compute the same thing: Triton kernels (:mod:`ftcore_moe_kernels.kernels`) on GPUs,
and a pure-torch reference (one matmul per expert segment) elsewhere, which is also the tests' oracle.
"""

from __future__ import annotations

from typing import Any

import torch


def reference_forward(x: torch.Tensor, weight: torch.Tensor, offsets: list[int],
                      gather: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    rows = x if gather is None else x[gather]
    out = rows.new_empty(rows.shape[0], weight.shape[1])
    for expert in range(weight.shape[0]):
        start, end = offsets[expert], offsets[expert + 1]
        if end > start:
            out[start:end] = rows[start:end] @ weight[expert].T
    return out


def reference_weight_grad(x: torch.Tensor, grad: torch.Tensor, offsets: list[int],
                          gather: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:  # fmt: skip
    rows = x if gather is None else x[gather]
    dweight = grad.new_zeros(shape, dtype=torch.float32)
    for expert in range(shape[0]):
        start, end = offsets[expert], offsets[expert + 1]
        if end > start:
            dweight[expert] = grad[start:end].float().T @ rows[start:end].float()
    return dweight


#: ``auto``: Triton on CUDA tensors, the reference elsewhere; ``triton`` or ``reference`` force one
#: (tests run the Triton kernels on the CPU through Triton's interpreter, ``TRITON_INTERPRET=1``).
BACKEND = "auto"


def use_triton(x: torch.Tensor) -> bool:
    return BACKEND == "triton" or (BACKEND == "auto" and x.is_cuda)


def project_rows(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor,
                 gather: torch.Tensor | None, rows: int) -> torch.Tensor:  # fmt: skip
    """``x[src(r)] @ weight[e(r)].T`` on the chosen backend."""
    if use_triton(x):
        from ftcore_moe_kernels.kernels import grouped_mm

        return grouped_mm(x, weight, offsets, gather, rows)
    return reference_forward(x, weight, offsets.tolist(), gather)


def accumulate_weight_grad(x: torch.Tensor, grad: torch.Tensor, offsets: torch.Tensor,
                           gather: torch.Tensor | None, like: torch.Tensor,
                           scale: float = 1.0) -> torch.Tensor:  # fmt: skip
    """``scale * grad[rows of e].T @ x[src(rows of e)]`` per expert (float32 sums), shaped and
    typed like ``like``."""
    if use_triton(x):
        from ftcore_moe_kernels.kernels import grouped_weight_grad

        return grouped_weight_grad(x, grad, offsets, gather, like.shape, like.dtype, scale)
    dweight = reference_weight_grad(x, grad, offsets.tolist(), gather, like.shape)
    return (dweight * scale).to(like.dtype)


def collect_input_grad(drows: torch.Tensor, x: torch.Tensor, gather: torch.Tensor | None,
                       copies: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """The gradient of ``x`` from its sorted rows' gradients ``drows``."""
    if gather is None:
        return drows
    if copies is not None:  # a token chosen by k experts sums its k rows
        from ftcore_moe_kernels.combine import sum_rows

        return sum_rows(drows, copies).to(x.dtype)
    return torch.zeros_like(x).index_add_(0, gather, drows.to(x.dtype))


class GroupedLinear(torch.autograd.Function):
    """``y[r] = x[src(r)] @ weight[e(r)].T`` over expert-sorted rows, with its backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor,
                gather: torch.Tensor | None, copies: torch.Tensor | None,
                sorted_rows: int) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(x, weight, offsets, gather, copies)
        ctx.sorted_rows = sorted_rows
        return project_rows(x, weight, offsets, gather, sorted_rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, offsets, gather, copies = ctx.saved_tensors
        grad = grad.contiguous()
        dx = dweight = None
        if ctx.needs_input_grad[0]:
            # d rows = grad @ weight[e]: the same grouped product with the weight transposed
            drows = project_rows(grad, weight.transpose(1, 2), offsets, None, ctx.sorted_rows)
            dx = collect_input_grad(drows, x, gather, copies)
        if ctx.needs_input_grad[1]:
            dweight = accumulate_weight_grad(x, grad, offsets, gather, weight)
        return dx, dweight, None, None, None, None


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor,
                   gather: torch.Tensor | None = None,
                   copies: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """See :class:`GroupedLinear`; ``offsets`` has ``E + 1`` entries, the last the row count
    (``len(gather)`` rows, or all of ``x``'s rows when there is no gather)."""
    rows = x.shape[0] if gather is None else gather.numel()
    return GroupedLinear.apply(x, weight, offsets, gather, copies, rows)
