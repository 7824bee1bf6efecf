"""Each token's ``k`` expert rows summed back into one: ``out[t] = sum_j w[t, j] * y[rows[t, j]]``.

This is the last step of an MoE block (``w`` the router weights) and, unweighted, the input
gradient of the gathered first projection (a token's hidden state was read by ``k`` rows). The
sum runs in float32, as transformers' implementations mix the router weights. Its backward writes
``dy[rows[t, j]] = w[t, j] * grad[t]`` (each row once: ``rows`` is a permutation, so no atomic
adds) and ``dw[t, j] = <grad[t], y[rows[t, j]]>``; only ``y``, ``rows`` and ``w`` are kept.

On the GPU one Triton program handles one token in both passes; elsewhere the same sums run in
torch (the tests' oracle).
"""

from __future__ import annotations

from typing import Any

import torch

from ftcore_moe_kernels.grouped import use_triton


def sum_rows(
    y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``out[t] = sum_j weights[t, j] * y[rows[t, j]]`` (unit weights when ``None``); no
    autograd."""
    if use_triton(y):
        from ftcore_moe_kernels.combine_kernels import combine_forward

        return combine_forward(y, rows, weights)
    per_token = y[rows].float()  # [T, k, H]
    if weights is not None:
        per_token = per_token * weights.float().unsqueeze(-1)
    return per_token.sum(1).to(y.dtype)


class CombineRows(torch.autograd.Function):
    """:func:`sum_rows` with the router weights, differentiable in ``y`` and ``weights``."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor):
        ctx.save_for_backward(y, rows, weights)
        return sum_rows(y, rows, weights)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        y, rows, weights = ctx.saved_tensors
        grad = grad.contiguous()
        if use_triton(y):
            from ftcore_moe_kernels.combine_kernels import combine_backward

            dy, dweights = combine_backward(y, rows, weights, grad)
        else:
            dy = torch.empty_like(y)
            spread = weights.float().unsqueeze(-1) * grad.float().unsqueeze(1)  # [T, k, H]
            dy[rows.reshape(-1)] = spread.reshape(-1, y.shape[-1]).to(y.dtype)
            dweights = (y[rows].float() * grad.float().unsqueeze(1)).sum(-1)
        return dy, None, dweights.to(weights.dtype)


def combine_rows(y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """See :class:`CombineRows`: ``y [T * k, H]`` in expert order, ``rows [T, k]`` the row of each
    of a token's ``k`` slots, ``weights [T, k]``; returns ``[T, H]`` in ``y``'s dtype."""
    if rows.numel() != y.shape[0]:  # the backward writes each row of y once: all must be covered
        raise ValueError(f"rows covers {rows.numel()} of y's {y.shape[0]} rows")
    return CombineRows.apply(y, rows, weights)
