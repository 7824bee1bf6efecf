"""The Triton grouped linear (run by Triton's interpreter on the CPU) against the torch reference."""

from __future__ import annotations

import pytest
import torch

from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.experts import sort_by_expert


@pytest.fixture
def backend(monkeypatch):
    def use(name):
        monkeypatch.setattr(grouped, "BACKEND", name)

    return use


def run(backend_name, backend, x, w, offsets, gather, g):
    backend(backend_name)
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    y = grouped.grouped_linear(x, w, offsets, gather)
    dx, dw = torch.autograd.grad(y, (x, w), g)
    return y, dx, dw


@pytest.mark.parametrize("gather", [True, False])
@pytest.mark.parametrize(("tokens", "experts", "top_k"), [(37, 4, 2), (130, 8, 3), (5, 6, 1)])
def test_triton_matches_the_reference_forward_and_backward(backend, gather, tokens, experts, top_k):
    torch.manual_seed(tokens)
    hidden, out = 24, 40
    x = torch.randn(tokens, hidden)
    w = torch.randn(experts, out, hidden)
    index = torch.randint(0, experts, (tokens, top_k))  # some experts get no token
    token_of_slot, _, offsets = sort_by_expert(index, experts)
    if gather:
        source = token_of_slot
    else:
        x = x[token_of_slot]
        source = None
    g = torch.randn(token_of_slot.numel(), out)
    expected = run("reference", backend, x, w, offsets, source, g)
    got = run("triton", backend, x, w, offsets, source, g)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_the_reference_is_one_matmul_per_expert_segment():
    x = torch.arange(12.0).view(4, 3)
    w = torch.stack([torch.eye(3), 2 * torch.eye(3)])
    offsets = torch.tensor([0, 1, 4])
    y = grouped.reference_forward(x, w, offsets.tolist(), torch.tensor([3, 0, 1, 2]))
    torch.testing.assert_close(y, torch.cat([x[3:4], 2 * x[0:3]]))
