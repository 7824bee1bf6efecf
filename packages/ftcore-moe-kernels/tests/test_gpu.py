"""The Triton kernels on the GPU in bf16: against the reference and against transformers' grouped_mm,
forward and backward, with and without expert LoRA; SonicMoE where its package is installed
(skipped in CI)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from test_grouped_lora import with_delta_weights
from test_models import tiny

from ftcore.testing import loss_and_gradients, relative_error
from ftcore_moe_kernels import grouped, kernels, sonic
from ftcore_moe_kernels.combine import combine_rows
from ftcore_moe_kernels.experts import register, sort_by_expert
from ftcore_moe_kernels.grouped_lora import grouped_lora_linear
from ftcore_moe_kernels.models import apply_experts_implementation

pytestmark = pytest.mark.gpu


def run(backend, monkeypatch, x, w, offsets, gather, g, copies=None):
    monkeypatch.setattr(grouped, "BACKEND", backend)
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    y = grouped.grouped_linear(x, w, offsets, gather, copies)
    return (y, *torch.autograd.grad(y, (x, w), g))


@pytest.mark.parametrize("tile_order", ["spread", "grouped"])
@pytest.mark.parametrize("routing", ["uniform", "skewed"])
@pytest.mark.parametrize(("hidden", "out"), [(2048, 1536), (768, 2048)])
def test_grouped_kernel_matches_the_reference_in_bf16(routing, hidden, out, tile_order,
                                                      monkeypatch):  # fmt: skip
    monkeypatch.setattr(kernels, "TILE_ORDER", tile_order)
    torch.manual_seed(0)
    tokens, experts, top_k = 4096, 128, 8
    x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(experts, out, hidden, device="cuda", dtype=torch.bfloat16) / hidden**0.5
    logits = torch.randn(tokens, experts, device="cuda")
    if routing == "skewed":  # most tokens go to a few experts; many experts get none
        logits[:, :8] += 6.0
    index = logits.topk(top_k, -1).indices
    order = sort_by_expert(index, experts)
    g = torch.randn(order.source.numel(), out, device="cuda", dtype=torch.bfloat16)
    expected = run("reference", monkeypatch, x, w, order.offsets, order.source, g)
    got = run("triton", monkeypatch, x, w, order.offsets, order.source, g, order.rows)
    for name, a, b in zip(("output", "dx", "dweight"), got, expected):
        assert relative_error(a, b) < 1e-2, name


def test_float32_products_follow_torch_s_tf32_setting(monkeypatch):
    """Without TF32 (torch's default) the kernels match float32 matmuls closely; TF32's 10-bit
    mantissa would leave errors near 1e-3."""
    torch.manual_seed(0)
    tokens, experts, top_k, hidden, out = 1024, 16, 2, 1024, 768
    x = torch.randn(tokens, hidden, device="cuda")
    w = torch.randn(experts, out, hidden, device="cuda") / hidden**0.5
    order = sort_by_expert(torch.randn(tokens, experts, device="cuda").topk(top_k, -1).indices,
                           experts)  # fmt: skip
    g = torch.randn(order.source.numel(), out, device="cuda")
    assert kernels.dot_precision(torch.float32) == "ieee"
    expected = run("reference", monkeypatch, x, w, order.offsets, order.source, g)
    got = run("triton", monkeypatch, x, w, order.offsets, order.source, g, order.rows)
    for name, a, b in zip(("output", "dx", "dweight"), got, expected):
        assert relative_error(a, b) < 1e-5, name


@pytest.mark.parametrize("weights_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("tokens", "top_k", "hidden"), [(8192, 8, 2048), (4093, 6, 1100)])
def test_combine_matches_torch_in_bf16(tokens, top_k, hidden, weights_dtype, monkeypatch):
    """The combine kernels (a token's k rows summed, and the backward) at a model's shapes; 1,100
    leaves a partial 1,024-wide slice."""
    torch.manual_seed(0)
    index = torch.rand(tokens, 64, device="cuda").topk(top_k, -1).indices
    rows = sort_by_expert(index, 64).rows
    y = torch.randn(tokens * top_k, hidden, device="cuda", dtype=torch.bfloat16)
    weights = torch.rand(tokens, top_k, device="cuda", dtype=weights_dtype)
    grad = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
    results = {}
    for backend in ("triton", "reference"):
        monkeypatch.setattr(grouped, "BACKEND", backend)
        leaves = [y.clone().requires_grad_(True), weights.clone().requires_grad_(True)]
        out = combine_rows(leaves[0], rows, leaves[1])
        results[backend] = (out, *torch.autograd.grad(out, leaves, grad))
    for name, a, b in zip(("output", "dy", "dweights"), results["triton"], results["reference"]):
        assert a.dtype == b.dtype, name
        assert relative_error(a, b) < 1e-2, name


@pytest.mark.parametrize("tile_order", ["spread", "grouped"])
@pytest.mark.parametrize("gather", ["copies", "none"])
@pytest.mark.parametrize("fusion", ["loop", "epilogue"])
@pytest.mark.parametrize("rank", [20, 64])  # 20: a padded rank tile
def test_fused_lora_kernel_matches_the_delta_weight_formula_in_bf16(
    rank, fusion, gather, tile_order, monkeypatch
):
    """Against float32 autograd of ``x[src] @ (W[e] + s * B[e] @ A[e]).T``, delta weights formed."""
    monkeypatch.setattr(kernels, "LORA_FUSION", fusion)
    monkeypatch.setattr(kernels, "TILE_ORDER", tile_order)
    torch.manual_seed(0)
    tokens, experts, top_k, hidden, out, scaling = 4096, 128, 8, 2048, 1536, 2.0

    def randn(*shape, scale):
        return (torch.randn(*shape, device="cuda") * scale).bfloat16().requires_grad_(True)

    w, x = randn(experts, out, hidden, scale=hidden**-0.5), randn(tokens, hidden, scale=1.0)
    a, b = (
        randn(experts, rank, hidden, scale=hidden**-0.5),
        randn(experts, out, rank, scale=rank**-0.5),
    )
    order = sort_by_expert(torch.randn(tokens, experts, device="cuda").topk(top_k, -1).indices,
                           experts)  # fmt: skip
    if gather == "none":
        x = x[order.source].detach().requires_grad_(True)
    source = None if gather == "none" else order.source
    copies = order.rows if gather == "copies" else None
    g = torch.randn(order.source.numel(), out, device="cuda", dtype=torch.bfloat16)
    y = grouped_lora_linear(x, w, a, b, scaling, order.offsets, source, copies)
    got = (y, *torch.autograd.grad(y, (x, w, a, b), g))

    wide = [t.detach().float().requires_grad_(True) for t in (x, w, a, b)]
    expected = with_delta_weights(*wide, scaling, order.offsets.tolist(), source)
    want = (expected, *torch.autograd.grad(expected, wide, g.float()))
    for name, value, reference in zip(("output", "dx", "dw", "da", "db"), got, want):
        assert relative_error(value, reference) < 1e-2, name


def bf16_model(lora: bool):
    """One layer whose experts have moe-qwen3's shape (Qwen3-30B-A3B's): sonic-moe compiles its
    GEMMs per shape for minutes, and this way the benchmarks' kernel cache serves the test too."""
    register()
    experts = dict.fromkeys(("num_experts", "num_local_experts", "n_routed_experts"), 128)
    model = tiny("qwen3_moe", hidden_size=2048, moe_intermediate_size=768, num_experts_per_tok=8,
                 num_hidden_layers=1, vocab_size=1024, **experts)  # fmt: skip
    if lora:
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False,
                            target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])  # fmt: skip
        model = get_peft_model(model, config)
    return model.to("cuda", torch.bfloat16)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("kernel", ["scattermoe", "sonicmoe"])
def test_the_kernels_match_grouped_mm_in_bf16(kernel, lora):
    if kernel == "sonicmoe":
        pytest.importorskip("sonicmoe", reason="the sonic-moe package is not installed")
        sonic.check_sonicmoe()
        sonic.register()
    model = bf16_model(lora)
    ids = torch.randint(3, 1000, (4, 256), device="cuda")
    inputs = {"input_ids": ids, "labels": ids}
    apply_experts_implementation(model, "grouped_mm")
    plain, plain_grads = loss_and_gradients(model, inputs)
    apply_experts_implementation(model, kernel)
    patched, grads = loss_and_gradients(model, inputs)
    torch.testing.assert_close(patched.loss.float(), plain.loss.float(), rtol=1e-2, atol=1e-2)
    assert grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        assert relative_error(grads[name], grad) < 5e-2, name
