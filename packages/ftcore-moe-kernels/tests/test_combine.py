"""Summing each token's k expert rows: Triton (interpreted on the CPU) and torch against autograd
of the plain formula, forward and backward."""

from __future__ import annotations

import pytest
import torch

from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.combine import combine_rows, sum_rows
from ftcore_moe_kernels.experts import sort_by_expert


def expert_rows(tokens, experts, top_k, hidden, dtype):
    index = torch.stack([torch.randperm(experts)[:top_k] for _ in range(tokens)])
    rows = sort_by_expert(index, experts).rows
    y = torch.randn(tokens * top_k, hidden, dtype=dtype)
    weights = torch.rand(tokens, top_k, dtype=dtype)
    return y, rows, weights


def plain(y, rows, weights):
    """The formula, through autograd: gather, weight, sum (float32)."""
    return (y[rows].float() * weights.float().unsqueeze(-1)).sum(1).to(y.dtype)


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize(("tokens", "top_k", "hidden", "dtype"), [
    (7, 1, 24, torch.float32), (19, 3, 300, torch.float32), (11, 8, 64, torch.bfloat16),
    (5, 3, 1100, torch.float32),  # the forward takes the hidden size in slices of 1,024
])  # fmt: skip
def test_combine_matches_autograd(backend, tokens, top_k, hidden, dtype, monkeypatch):
    monkeypatch.setattr(grouped, "BACKEND", backend)
    torch.manual_seed(top_k)
    y, rows, weights = expert_rows(tokens, 12, top_k, hidden, dtype)
    grad = torch.randn(tokens, hidden, dtype=dtype)
    leaves = [y.clone().requires_grad_(True), weights.clone().requires_grad_(True)]
    expected = plain(leaves[0], rows, leaves[1])
    expected_grads = torch.autograd.grad(expected, leaves, grad)
    leaves = [y.clone().requires_grad_(True), weights.clone().requires_grad_(True)]
    got = combine_rows(leaves[0], rows, leaves[1])
    got_grads = torch.autograd.grad(got, leaves, grad)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(got, expected, **tolerance)
    for a, b in zip(got_grads, expected_grads):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_strided_bf16_rows_with_float32_weights_and_no_tokens(backend, monkeypatch):
    monkeypatch.setattr(grouped, "BACKEND", backend)
    y, rows, weights = expert_rows(6, 8, 2, 48, torch.bfloat16)
    base = torch.randn(y.shape[0], 96, dtype=torch.bfloat16)
    base[:, 24:72] = y
    base.requires_grad_(True)
    strided = base[:, 24:72]  # rows 96 apart, in both passes
    assert strided.stride() == (96, 1)
    weights = weights.float().requires_grad_(True)
    got = combine_rows(strided, rows, weights)
    grad = torch.randn_like(got)
    dbase, dweights = torch.autograd.grad(got, [base, weights], grad)
    leaves = [y.clone().requires_grad_(True), weights.detach().clone().requires_grad_(True)]
    expected = plain(leaves[0], rows, leaves[1])
    dy, expected_dweights = torch.autograd.grad(expected, leaves, grad)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(dbase[:, 24:72], dy)
    assert dbase[:, :24].eq(0).all() and dbase[:, 72:].eq(0).all()
    assert dweights.dtype == torch.float32
    torch.testing.assert_close(dweights, expected_dweights, rtol=2e-2, atol=2e-2)
    empty = combine_rows(y[:0], rows[:0], weights.detach()[:0])
    assert empty.shape == (0, 48)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_unweighted_sum_adds_each_tokens_rows(backend, monkeypatch):
    monkeypatch.setattr(grouped, "BACKEND", backend)
    y, rows, _ = expert_rows(9, 6, 4, 40, torch.float32)
    torch.testing.assert_close(sum_rows(y, rows), y[rows].sum(1))
