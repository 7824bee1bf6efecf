"""The Cut Cross Entropy kernel against the transformers loss, in bf16 on the GPU (skipped in CI)."""

from __future__ import annotations

import pytest
import torch
from test_families import MOE, batch, tiny_gemma3

from ftcore.testing import build_tiny_model, loss_and_gradients, relative_error
from ftcore_cce.forward import SUPPORTED_MODEL_TYPES, install

pytestmark = pytest.mark.gpu


def bf16_model(family: str):
    if family == "gemma3":
        model = tiny_gemma3()
    else:
        overrides = {"output_router_logits": True} if family in MOE else {}
        model = build_tiny_model(
            family, hidden_size=128, intermediate_size=256, head_dim=32, vocab_size=4096,
            tie_word_embeddings=family == "llama", **overrides,
        )  # fmt: skip
    return model.to("cuda", torch.bfloat16).train()


@pytest.mark.parametrize("family", SUPPORTED_MODEL_TYPES)
def test_the_kernel_matches_the_transformers_loss_in_bf16(family):
    model = bf16_model(family)
    inputs = {k: v.cuda() for k, v in batch().items()}
    plain, plain_grads = loss_and_gradients(model, inputs)
    install(model)
    patched, grads = loss_and_gradients(model, inputs)
    assert patched.logits is None
    torch.testing.assert_close(patched.loss.float(), plain.loss.float(), rtol=2e-2, atol=2e-2)
    for name, grad in plain_grads.items():
        assert relative_error(grads[name], grad) < 5e-2, name


def test_the_kernel_saves_the_logits_memory():
    """8 x 2048 tokens over a 128k vocabulary: the plain loss holds logits, the kernel does not."""
    model = build_tiny_model(
        "llama", hidden_size=256, intermediate_size=512, head_dim=64, num_attention_heads=4,
        vocab_size=128256, tie_word_embeddings=True,
    ).to("cuda", torch.bfloat16).train()  # fmt: skip
    ids = torch.randint(0, 128000, (8, 2048), device="cuda")

    def peak() -> float:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**30

    plain = peak()
    install(model)
    cce = peak()
    logits_gib = 8 * 2048 * 128256 * 2 / 2**30
    assert plain - cce > 2 * logits_gib, (plain, cce)
