"""Liger's kernels against transformers, in bf16 on the GPU (skipped in CI)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from ftcore.testing import build_tiny_model
from ftcore_liger.patching import KEY_TO_KWARGS, apply

pytestmark = pytest.mark.gpu

FAMILIES = ["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2",
            "gemma3_text", "phi3", "olmo2"]  # fmt: skip
ALL_ON = {key: key != "liger_cross_entropy" for key in KEY_TO_KWARGS}


@pytest.fixture(autouse=True)
def restore_transformers():
    saved = {
        name: dict(vars(module))
        for name, module in list(sys.modules.items())
        if name.startswith("transformers.models.") and name.count(".") == 3
    }
    yield
    for name, namespace in saved.items():
        vars(sys.modules[name]).update(namespace)


def settings(**keys):
    values = {key: None for key in KEY_TO_KWARGS} | {"liger_use_token_scaling": None}
    return SimpleNamespace(**(values | keys))


def relative_error(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 4000, (2, 64), device="cuda")
    labels = ids.clone()
    labels[:, :8] = -100
    return {"input_ids": ids, "labels": labels}


def run(model, inputs):
    model.zero_grad()
    output = model(**inputs)
    output.loss.backward()
    return output, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_match_transformers_in_bf16(family):
    model = build_tiny_model(
        family, hidden_size=128, intermediate_size=256, head_dim=32, vocab_size=4096
    ).to("cuda", torch.bfloat16).train()  # fmt: skip
    inputs = batch()
    plain, plain_grads = run(model, inputs)
    apply(settings(**ALL_ON), model)
    patched, grads = run(model, inputs)
    assert patched.logits is None  # the fused loss never built them
    torch.testing.assert_close(patched.loss.float(), plain.loss.float(), rtol=2e-2, atol=2e-2)
    for name, grad in plain_grads.items():
        assert relative_error(grads[name], grad) < 5e-2, name


def test_token_scaling_weighs_each_token_by_its_probability():
    model = build_tiny_model("llama", vocab_size=4096).to("cuda", torch.float32).train()
    inputs = batch()
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"]).logits[:, :-1].float()
        targets = inputs["labels"][:, 1:]
        keep = targets != -100
        log_probs = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0)[..., None])[
            ..., 0
        ]
        expected = (-log_probs * log_probs.exp())[keep].mean()
    apply(settings(liger_fused_linear_cross_entropy=True, liger_use_token_scaling=True), model)
    got = model(**inputs).loss
    torch.testing.assert_close(got.float(), expected, rtol=1e-3, atol=1e-4)
