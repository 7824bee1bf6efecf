"""LoRA on the expert parameters (peft ``target_parameters``) runs through the grouped products
with the adapter's factors: the same loss and adapter gradients as eager, no delta weights formed."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from test_models import assert_unchanged_by, tiny

from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.experts import register
from ftcore_moe_kernels.models import apply_experts_implementation

EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def lora_model(model_type: str):
    register()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                        target_parameters=EXPERT_PARAMETERS, init_lora_weights=False)  # fmt: skip
    return get_peft_model(tiny(model_type, num_hidden_layers=1), config)


def poison_folded_weights(monkeypatch):
    """Make peft's folded expert weights (``W + scaling * lhs @ rhs``) all NaN from now on.

    peft still folds once when it registers the parametrization (a shape check of torch's); a
    forward that reads the folded weight gives NaN, one that uses the factors does not.
    """
    layer = pytest.importorskip("peft.tuners.lora.layer")
    if not hasattr(layer, "_LoraFactorsProxy"):
        pytest.skip("this peft folds expert LoRA into the weight; nothing to avoid")
    monkeypatch.setattr(layer._LoraFactorsProxy, "forward",
                        lambda self, W: torch.full_like(W, float("nan")))  # fmt: skip


def count_folds(monkeypatch) -> list[torch.Size]:
    """The shape of every fold (``W + scaling * lhs @ rhs``) peft computes from now on."""
    layer = pytest.importorskip("peft.tuners.lora.layer")
    if not hasattr(layer, "_LoraFactorsProxy"):
        pytest.skip("this peft folds expert LoRA into the weight; nothing to avoid")
    folds, fold = [], layer._LoraFactorsProxy.forward
    monkeypatch.setattr(layer._LoraFactorsProxy, "forward",
                        lambda self, W: folds.append(W.shape) or fold(self, W))  # fmt: skip
    return folds


def test_peft_hands_the_factors_over_without_folding_them(monkeypatch):
    """Under scattermoe peft registers no parametrization, so torch's check does not fold the
    expert stack; under eager it does, and reads the fold."""
    model = lora_model("qwen3_moe")
    apply_experts_implementation(model, "scattermoe")
    folds = count_folds(monkeypatch)
    ids = torch.randint(3, 100, (2, 10))
    model(input_ids=ids, labels=ids).loss.backward()
    assert folds == []
    apply_experts_implementation(model, "eager")
    model(input_ids=ids, labels=ids)
    assert len(folds) >= 2


def test_a_deep_copy_hands_over_its_own_factors(monkeypatch):
    """The mark travels with each wrapper: a copy (an EMA, a reference model) keeps its LoRA."""
    model = lora_model("qwen3_moe")
    apply_experts_implementation(model, "scattermoe")
    twin = copy.deepcopy(model)
    folds = count_folds(monkeypatch)
    ids = torch.randint(3, 100, (2, 10))
    with torch.no_grad():
        assert twin(input_ids=ids, labels=ids).loss == model(input_ids=ids, labels=ids).loss
        for name, parameter in twin.named_parameters():
            if "experts" in name and "lora_B" in name:
                parameter.mul_(10)
        assert twin(input_ids=ids, labels=ids).loss != model(input_ids=ids, labels=ids).loss
    assert folds == []


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral"])
def test_expert_lora_matches_eager_without_forming_delta_weights(model_type, backend, monkeypatch):
    monkeypatch.setattr(grouped, "BACKEND", backend)
    model = lora_model(model_type)
    ids = torch.randint(3, 100, (2, 10))
    inputs = {"input_ids": ids, "labels": ids}

    def switch():
        poison_folded_weights(monkeypatch)
        apply_experts_implementation(model, "scattermoe")

    grads = assert_unchanged_by(model, inputs, switch, rtol=1e-4, atol=1e-5)
    assert any("lora" in name and "experts" in name for name in grads)


def test_eager_does_read_the_folded_weights(monkeypatch):
    """The poison of the test above reaches a forward that uses peft's folded weights."""
    model = lora_model("qwen3_moe")
    poison_folded_weights(monkeypatch)
    ids = torch.randint(3, 100, (1, 6))
    assert model(input_ids=ids, labels=ids).loss.isnan()


def test_the_kernels_get_factors_contiguous_in_memory(monkeypatch):
    """peft 0.21 hands over ``lhs`` as a permuted view (the expert index fastest in memory); the
    kernels must see each factor, or its transpose, contiguous, or their loads leave the
    pipelined main loop."""
    from ftcore_moe_kernels import kernels

    monkeypatch.setattr(grouped, "BACKEND", "triton")
    model = lora_model("qwen3_moe")
    apply_experts_implementation(model, "scattermoe")
    layouts = []
    launch = kernels._launch_grouped_mm

    def record(x, weight, offsets, gather, rows, lora):
        if lora is not None:
            layouts.extend(f.is_contiguous() or f.transpose(1, 2).is_contiguous() for f in lora[:2])
        return launch(x, weight, offsets, gather, rows, lora)

    monkeypatch.setattr(kernels, "_launch_grouped_mm", record)
    ids = torch.randint(3, 100, (1, 6))
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(layouts) == 8 and all(layouts)  # 2 projections x (forward, input gradient) x 2
