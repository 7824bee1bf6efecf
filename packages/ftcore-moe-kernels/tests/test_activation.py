"""The fused gated activation (Triton's interpreter on the CPU) against the experts' own gate."""

from __future__ import annotations

import pytest
import torch
from test_models import tiny

from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.activation import GELU_TANH, SILU, GatedActivation, fused_kind
from ftcore_moe_kernels.models import TESTED_MODEL_TYPES


def experts_of(model):
    return next(module for module in model.modules() if type(module).__name__.endswith("Experts"))


def unfused(gate_up, kind):
    gate, up = gate_up.chunk(2, dim=-1)
    act = (
        torch.nn.functional.silu
        if kind == SILU
        else lambda g: torch.nn.functional.gelu(g, approximate="tanh")
    )
    return act(gate) * up


@pytest.mark.parametrize("kind", [SILU, GELU_TANH], ids=["swiglu", "geglu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_kernels_match_autograd_through_the_unfused_gate(kind, dtype):
    torch.manual_seed(kind)
    gate_up = (3 * torch.randn(37, 2 * 300)).to(dtype)  # partial blocks of rows and columns
    grad = torch.randn(37, 300).to(dtype)
    x = gate_up.double().requires_grad_(True)  # the oracle: torch's float32 tanh-GELU is less exact
    expected = unfused(x, kind)
    (expected_dx,) = torch.autograd.grad(expected, x, grad.double())
    y = gate_up.clone().requires_grad_(True)
    got = GatedActivation.apply(y, kind)
    (got_dx,) = torch.autograd.grad(got, y, grad)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    )
    assert got.dtype == got_dx.dtype == dtype
    torch.testing.assert_close(got.double(), expected, **tolerance)
    torch.testing.assert_close(got_dx.double(), expected_dx, **tolerance)


def test_which_families_get_the_fused_gate():
    kinds = {}
    for model_type in TESTED_MODEL_TYPES:
        kinds[model_type] = fused_kind(experts_of(tiny(model_type)))
    assert kinds["qwen3_moe"] == kinds["mixtral"] == SILU
    assert kinds["gemma4_text"] == GELU_TANH
    experts = experts_of(tiny("qwen3_moe"))
    experts.act_fn = torch.nn.ReLU()  # an activation without a kernel: the module's own gate
    assert fused_kind(experts) is None


def test_a_gemma4_model_trains_the_same_through_the_fused_geglu(monkeypatch):
    from test_models import assert_unchanged_by

    from ftcore_moe_kernels.experts import register
    from ftcore_moe_kernels.models import apply_experts_implementation

    register()
    monkeypatch.setattr(grouped, "BACKEND", "triton")
    model = tiny("gemma4_text")
    ids = torch.randint(3, 100, (1, 10))
    assert_unchanged_by(model, {"input_ids": ids, "labels": ids},
                        lambda: apply_experts_implementation(model, "scattermoe"),
                        rtol=1e-4, atol=1e-5)  # fmt: skip
