"""The grouped linear with a fused LoRA adapter (Triton in the interpreter on the CPU, and the torch
reference) against autograd of the plain formula ``x[src] @ (W[e] + scaling * B[e] @ A[e]).T``."""

from __future__ import annotations

import pytest
import torch

from ftcore_moe_kernels import grouped, kernels
from ftcore_moe_kernels.experts import sort_by_expert
from ftcore_moe_kernels.grouped_lora import grouped_lora_linear

#: (backend, kernels.LORA_FUSION, kernels.TILE_ORDER): the reference, and Triton with each place of
#: the ``A`` product and each tile order.
SETUPS = {
    "reference": ("reference", "loop", "spread"),
    "triton-loop": ("triton", "loop", "spread"),
    "triton-epilogue": ("triton", "epilogue", "spread"),
    "triton-loop-grouped": ("triton", "loop", "grouped"),
    "triton-epilogue-grouped": ("triton", "epilogue", "grouped"),
}


@pytest.fixture(params=SETUPS)
def backend(request, monkeypatch):
    """Tiles of 16 rows, so that an expert's rows span several tiles."""
    name, fusion, order = SETUPS[request.param]
    monkeypatch.setattr(grouped, "BACKEND", name)
    monkeypatch.setattr(kernels, "BLOCK_M", 16)
    monkeypatch.setattr(kernels, "LORA_FUSION", fusion)
    monkeypatch.setattr(kernels, "TILE_ORDER", order)


def with_delta_weights(x, w, a, b, scaling, offsets, source):
    """Autograd's answer, with each expert's delta weight formed."""
    rows = x if source is None else x[source]
    out = [rows[offsets[e] : offsets[e + 1]] @ (w[e] + scaling * b[e] @ a[e]).T
           for e in range(w.shape[0])]  # fmt: skip
    return torch.cat(out)


def padded(shape):
    """A tensor of ``shape`` inside NaN-filled storage (8 more columns): a load past the last
    column, which a missing mask would make, turns the result into NaN."""
    storage = torch.full((*shape[:-1], shape[-1] + 8), float("nan"))
    storage[..., : shape[-1]] = torch.randn(shape)
    return storage[..., : shape[-1]]


def check(tokens, experts, top_k, rank, gather, trainable, seed=0):
    torch.manual_seed(seed)
    hidden, out, scaling = 24, 40, 0.75
    order = sort_by_expert(torch.randint(0, experts, (tokens, top_k)), experts)
    x = padded((tokens, hidden))
    if gather == "none":
        x = x[order.source]
    w, a, b = (
        padded((experts, out, hidden)),
        padded((experts, rank, hidden)),
        padded((experts, out, rank)),
    )
    tensors = {"x": x, "w": w, "a": a, "b": b}
    for name in trainable:
        tensors[name].requires_grad_(True)
    g = torch.randn(order.source.numel(), out)
    source = None if gather == "none" else order.source
    copies = order.rows if gather == "copies" else None
    params = [tensors[name] for name in trainable]

    y = grouped_lora_linear(x, w, a, b, scaling, order.offsets, source, copies)
    expected = with_delta_weights(x, w, a, b, scaling, order.offsets.tolist(), source)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-3)
    got = torch.autograd.grad(y, params, g)
    want = torch.autograd.grad(expected, params, g)
    for name, value, reference in zip(trainable, got, want):
        torch.testing.assert_close(value, reference, rtol=1e-4, atol=1e-3,
                                   msg=lambda message, name=name: f"d{name}: {message}")  # fmt: skip


@pytest.mark.parametrize("gather", ["copies", "scatter", "none"])
@pytest.mark.parametrize("rank", [4, 20])  # 20: a rank tile of 32, masked
@pytest.mark.parametrize("trainable", [("x", "a", "b"), ("x", "w", "a", "b")], ids=["lora", "full"])
def test_fused_lora_matches_the_delta_weight_formula(backend, gather, rank, trainable):
    check(41, 5, 2, rank, gather, trainable, seed=rank)


def test_frozen_input_still_gives_the_factors_gradients(backend):
    check(9, 3, 2, 4, "copies", ("a", "b"))


def test_experts_without_rows_and_no_rows_at_all(backend):
    check(3, 8, 1, 4, "copies", ("x", "a", "b"))  # 3 rows for 8 experts
    check(0, 4, 2, 4, "copies", ("x", "a", "b"))
