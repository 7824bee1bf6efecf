"""The grouped linear with a fused LoRA adapter (Triton in the interpreter on the CPU, and the torch
reference) against autograd of the plain formula ``x[src] @ (W[e] + scaling * B[e] @ A[e]).T``."""

from __future__ import annotations

import pytest
import torch

from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.experts import sort_by_expert
from ftcore_moe_kernels.grouped_lora import grouped_lora_linear


@pytest.fixture(autouse=True, params=["loop", "epilogue"])
def fusion(request, monkeypatch):
    """Tiles of 16 rows, and each place of the ``A`` product (``kernels.LORA_FUSION``)."""
    from ftcore_moe_kernels import kernels

    monkeypatch.setattr(kernels, "BLOCK_M", 16)
    monkeypatch.setattr(kernels, "LORA_FUSION", request.param)


def plain(x, w, a, b, scaling, index):
    """Autograd's answer, with each expert's delta weight formed."""
    rows = x if index.source is None else x[index.source]
    out = []
    for expert in range(w.shape[0]):
        segment = slice(index.offsets[expert], index.offsets[expert + 1])
        out.append(rows[segment] @ (w[expert] + scaling * b[expert] @ a[expert]).T)
    return torch.cat(out)


class Index:
    def __init__(self, order, gather):
        self.offsets = order.offsets.tolist()
        self.source = order.source if gather else None


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("gather", ["copies", "scatter", "none"])
@pytest.mark.parametrize("rank", [4, 20])  # 20: a rank tile of 32, masked
@pytest.mark.parametrize("train_weight", [False, True])
def test_fused_lora_matches_the_delta_weight_formula(backend, gather, rank, train_weight,
                                                     monkeypatch):  # fmt: skip
    monkeypatch.setattr(grouped, "BACKEND", backend)
    torch.manual_seed(rank)
    tokens, experts, top_k, hidden, out, scaling = 41, 5, 2, 24, 40, 0.75
    order = sort_by_expert(torch.randint(0, experts, (tokens, top_k)), experts)
    x = torch.randn(tokens, hidden)
    if gather == "none":
        x = x[order.source]
    w = torch.randn(experts, out, hidden).requires_grad_(train_weight)
    a = torch.randn(experts, rank, hidden, requires_grad=True)
    b = torch.randn(experts, out, rank, requires_grad=True)
    x.requires_grad_(True)
    g = torch.randn(order.source.numel(), out)
    source = None if gather == "none" else order.source
    copies = order.rows if gather == "copies" else None
    params = [x, a, b] + ([w] if train_weight else [])

    y = grouped_lora_linear(x, w, a, b, scaling, order.offsets, source, copies)
    got = (y, *torch.autograd.grad(y, params, g))
    expected_y = plain(x, w, a, b, scaling, Index(order, gather != "none"))
    expected = (expected_y, *torch.autograd.grad(expected_y, params, g))
    for name, value, want in zip(["y", "dx", "da", "db", "dw"], got, expected):
        torch.testing.assert_close(value, want, rtol=1e-4, atol=1e-3, msg=name)


def test_frozen_input_still_gives_the_factors_gradients():
    torch.manual_seed(0)
    order = sort_by_expert(torch.randint(0, 3, (9, 2)), 3)
    x, w = torch.randn(9, 8), torch.randn(3, 16, 8)
    a = torch.randn(3, 4, 8, requires_grad=True)
    b = torch.randn(3, 16, 4, requires_grad=True)
    y = grouped_lora_linear(x, w, a, b, 2.0, order.offsets, order.source, order.rows)
    expected = plain(x, w, a, b, 2.0, Index(order, True))
    g = torch.randn_like(y)
    for value, want in zip(
        torch.autograd.grad(y, (a, b), g), torch.autograd.grad(expected, (a, b), g)
    ):
        torch.testing.assert_close(value, want, rtol=1e-4, atol=1e-3)
