"""Masking frequency, bidirectional attention, packing isolation, and the loss against a reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ftcore.testing import build_tiny_model
from ftcore_diffusion.config import DiffusionBlock
from ftcore_diffusion.loss import diffusion_loss, shifted_logits
from ftcore_diffusion.masking import apply_noise, mask_probability

MASK = 100


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_masking_frequency_matches_p(schedule):
    block = DiffusionBlock(noise_schedule=schedule, min_mask_ratio=0.2, max_mask_ratio=0.6)
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(10, 90, (4000, 64), generator=generator)}
    noisy, masked, p = apply_noise(batch, block, MASK, [], generator)
    assert float(p.min()) >= 0.2 and float(p.max()) <= 0.6
    observed = masked.float().mean(-1)
    assert float((observed - p).abs().mean()) < 0.05  # per row, 64 draws at probability p
    assert float(masked.float().mean()) == pytest.approx(float(p.mean()), abs=0.01)
    assert torch.equal(noisy[masked], torch.full_like(noisy[masked], MASK))
    t = torch.tensor([0.0, 0.5, 1.0])
    u = t if schedule == "linear" else 1 - torch.cos(t * math.pi / 2)
    expected = 0.2 + 0.4 * ((1 - 1e-3) * u + 1e-3)
    assert torch.allclose(mask_probability(t, block), expected)


def test_padding_special_tokens_and_prompts_are_never_masked():
    block = DiffusionBlock(min_mask_ratio=1.0, max_mask_ratio=1.0)
    ids = torch.tensor([[1, 20, 21, 22, 23, 2, 0, 0]])
    batch = {
        "input_ids": ids,
        "labels": torch.tensor([[-100, -100, -100, 22, 23, 2, -100, -100]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]]),
    }
    _, masked, _ = apply_noise(batch, block, MASK, [0, 1, 2])
    assert masked.tolist() == [[False, False, False, True, True, False, False, False]]


def test_attention_is_bidirectional_and_packed_sequences_are_isolated():
    model = build_tiny_model("llama", seed=0).double().eval()
    ids = torch.tensor([[5, 10, 11, 12, 13, 6, 20, 21, 22]])
    packed = {"input_ids": ids, "position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])}
    base = shifted_logits(model, ids, packed)
    later = ids.clone()
    later[0, 4] = 40  # a later token of the first sequence
    changed = shifted_logits(model, later, packed)
    assert not torch.allclose(base[0, 2], changed[0, 2])  # an earlier position sees it
    other = ids.clone()
    other[0, 7] = 44  # a token of the second, packed sequence
    isolated = shifted_logits(model, other, packed)
    assert torch.allclose(base[0, :5], isolated[0, :5], atol=1e-10)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_unpadded_rows_run_non_causal_without_a_mask_and_match_the_masked_path(family):
    from ftcore_diffusion.masking import bidirectional_mask

    model = build_tiny_model(family, seed=0, attn_implementation="sdpa").double().eval()
    ids = torch.tensor([[5, 10, 11, 12, 13, 14]])
    fast = shifted_logits(model, ids, {"input_ids": ids})
    mask = bidirectional_mask({"input_ids": ids}, torch.float64)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    masked = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    torch.testing.assert_close(fast, masked)
    later = ids.clone()
    later[0, 5] = 40
    assert not torch.allclose(fast[0, 2], shifted_logits(model, later, {"input_ids": later})[0, 2])
    assert all(m.is_causal for m in model.modules() if hasattr(m, "is_causal"))  # restored


@pytest.mark.parametrize("weighting", [True, False])
def test_loss_matches_a_float64_reference(weighting):
    model = build_tiny_model("qwen3", seed=0).double()
    block = DiffusionBlock(importance_weighting=weighting)
    batch = {
        "input_ids": torch.tensor([[1, 30, 31, 32, 33, 34], [1, 40, 41, 42, 0, 0]]),
        "labels": torch.tensor([[-100, -100, 31, 32, 33, 34], [-100, 40, 41, 42, -100, -100]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
    }
    loss, metrics = diffusion_loss(
        model, batch, block, MASK, [0, 1, 2], torch.Generator().manual_seed(3)
    )
    noisy, masked, p = apply_noise(batch, block, MASK, [0, 1, 2], torch.Generator().manual_seed(3))
    logits = shifted_logits(model, noisy, batch)
    total = 0.0
    for row in range(2):
        trained = int((batch["labels"][row] != -100).sum())
        row_sum = 0.0
        for pos in range(6):
            if masked[row, pos]:
                ce = F.cross_entropy(
                    logits[row, pos][None], batch["input_ids"][row, pos][None]
                ).item()
                row_sum += ce / float(p[row]) if weighting else ce
        total += row_sum / trained
    assert loss.item() == pytest.approx(total / 2, rel=1e-6)
    assert metrics["num_masked_tokens"] == float(masked.sum())
