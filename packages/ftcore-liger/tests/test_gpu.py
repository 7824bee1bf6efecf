"""Liger's kernels against transformers, in bf16 on the GPU (skipped in CI)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftcore.testing import build_tiny_model, loss_and_gradients, relative_error
from ftcore_liger.patching import KEY_TO_KWARGS, apply

pytestmark = pytest.mark.gpu

FAMILIES = ["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2",
            "gemma3_text", "phi3", "olmo2"]  # fmt: skip
ALL_ON = {key: key != "liger_cross_entropy" for key in KEY_TO_KWARGS}


def settings(**keys):
    values = {key: None for key in KEY_TO_KWARGS} | {"liger_use_token_scaling": None}
    return SimpleNamespace(**(values | keys))


def batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 4000, (2, 64), device="cuda")
    labels = ids.clone()
    labels[:, :8] = -100
    return {"input_ids": ids, "labels": labels}


@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_match_transformers_in_bf16(family):
    model = build_tiny_model(
        family, hidden_size=128, intermediate_size=256, head_dim=32, vocab_size=4096
    ).to("cuda", torch.bfloat16).train()  # fmt: skip
    inputs = batch()
    plain, plain_grads = loss_and_gradients(model, inputs)
    apply(settings(**ALL_ON), model)
    patched, grads = loss_and_gradients(model, inputs)
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
