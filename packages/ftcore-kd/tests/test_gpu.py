"""The KD loss's Triton kernels on the GPU, in bf16 at vocabulary sizes of real models (skipped in CI)."""

from __future__ import annotations

import pytest
import torch

from ftcore.testing import relative_error
from ftcore_kd import loss as kd_loss_module
from ftcore_kd.loss import kd_loss

pytestmark = pytest.mark.gpu


def batch(tokens=3000, dim=512, vocab=128256, k=64, seed=0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    hidden = torch.randn(1, tokens, dim, device="cuda", generator=generator) / dim**0.5
    weight = torch.randn(vocab, dim, device="cuda", generator=generator)
    labels = torch.randint(0, vocab, (1, tokens), device="cuda", generator=generator)
    labels[0, :100] = -100
    ids = torch.randint(0, vocab, (1, tokens, k), device="cuda", generator=generator)
    ids[0, 200:400, 0] = labels[0, 200:400]  # targets among the teacher's tokens
    logprobs = torch.log_softmax(torch.randn(1, tokens, k, device="cuda", generator=generator), -1)
    logprobs[0, 500:600, k // 2 :] = -torch.inf
    mask = torch.ones(1, tokens, dtype=torch.bool, device="cuda")
    return hidden, weight, labels, ids, logprobs, mask


def run(kernels, monkeypatch, dtype, **settings):
    monkeypatch.setattr(kd_loss_module, "BACKEND", kernels)
    hidden, weight, *teacher = batch()
    hidden = hidden.to(dtype).requires_grad_(True)
    weight = weight.to(dtype).requires_grad_(True)
    loss, _ = kd_loss(hidden, weight, *teacher, kd_alpha=0.9, ce_alpha=0.1, **settings)
    return loss.float(), torch.autograd.grad(loss, (hidden, weight))


SETTINGS = {
    "forward": dict(beta=0.0),
    "reverse-T2": dict(beta=1.0, temperature=2.0),
    "mixed-normalized": dict(beta=0.5, normalize_topk=True),
    "softcap": dict(beta=0.0, softcap=2.0),  # logits are about N(0, 1): the cap bites
}


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_triton_kernels_match_the_float32_loss_and_gradients_in_bf16(settings, monkeypatch):
    exact, exact_grads = run("reference", monkeypatch, torch.float32, **settings)
    loss, grads = run("triton", monkeypatch, torch.bfloat16, **settings)
    torch.testing.assert_close(loss, exact, rtol=1e-2, atol=1e-2)
    for got, want in zip(grads, exact_grads):
        assert got.dtype == torch.bfloat16
        assert relative_error(got, want) < 3e-2


def test_triton_and_torch_kernels_agree_in_bf16(monkeypatch):
    torch_loss, torch_grads = run("reference", monkeypatch, torch.bfloat16, beta=0.3)
    loss, grads = run("triton", monkeypatch, torch.bfloat16, beta=0.3)
    torch.testing.assert_close(loss, torch_loss, rtol=1e-3, atol=1e-3)
    for got, want in zip(grads, torch_grads):
        assert relative_error(got, want) < 1e-2
