"""Sample packing: bins respect capacity, and a packed batch computes the unpacked loss."""

from __future__ import annotations

import random

import pytest
import torch

from ftcore.data.packing import PackedCollator, PaddingCollator, pack_lengths, packing_efficiency
from ftcore.data.strategies import IGNORE_INDEX
from ftcore.testing import build_tiny_model


def test_bins_hold_every_example_once_within_capacity():
    rng = random.Random(0)
    lengths = [rng.randint(1, 64) for _ in range(500)]
    bins = pack_lengths(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert packing_efficiency(lengths, bins, 64) > 0.95
    assert pack_lengths(lengths, 64) == bins  # deterministic


def test_an_example_longer_than_capacity_is_rejected():
    with pytest.raises(ValueError, match="more than the capacity"):
        pack_lengths([3, 9], 8)


def examples(count=5, seed=0):
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        ids = [rng.randrange(6, 100) for _ in range(rng.randint(4, 12))]
        labels = list(ids)
        labels[0] = IGNORE_INDEX
        labels[1] = IGNORE_INDEX  # a masked prompt token too
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def summed_loss(model, batch):
    """Sum of per-token losses (the model's mean times the number of trained tokens)."""
    out = model(**batch, use_cache=False)
    trained = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    return out.loss * trained, trained


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_packed_loss_equals_unpacked_loss(attn, family):
    model = build_tiny_model(family, seed=1, attn_implementation=attn).double().eval()
    rows = examples()
    unpacked_sum, unpacked_count = 0.0, 0
    for row in rows:
        batch = PaddingCollator(pad_token_id=0)([row])
        loss, count = summed_loss(model, batch)
        unpacked_sum, unpacked_count = unpacked_sum + loss, unpacked_count + count

    packed_row = {"input_ids": [], "labels": [], "position_ids": []}
    for row in rows:
        packed_row["input_ids"] += row["input_ids"]
        packed_row["labels"] += row["labels"]
        packed_row["position_ids"] += list(range(len(row["input_ids"])))
    short = {key: value[: len(rows[0]["input_ids"])] for key, value in packed_row.items()}
    batch = PackedCollator(pad_token_id=0)([packed_row, short])  # padding shares the batch
    assert "attention_mask" not in batch
    # use_cache=False as in training: with a cache, transformers skips the packed-sequence mask
    out = model(**{k: v[:1] for k, v in batch.items()}, use_cache=False)
    packed_count = (batch["labels"][:1, 1:] != IGNORE_INDEX).sum()
    assert packed_count == unpacked_count
    torch.testing.assert_close(out.loss * packed_count, unpacked_sum, rtol=1e-6, atol=1e-6)

    # The padded second row still computes its own loss exactly.
    padded = model(**{k: v[1:] for k, v in batch.items()}, use_cache=False)
    alone = model(**PaddingCollator(pad_token_id=0)([rows[0]]), use_cache=False)
    torch.testing.assert_close(padded.loss, alone.loss, rtol=1e-6, atol=1e-6)


def test_packing_without_position_ids_would_leak_attention():
    """Guards the test above: without restarting positions the loss differs."""
    model = build_tiny_model("llama", seed=1).double().eval()
    rows = examples()
    ids = [t for r in rows for t in r["input_ids"]]
    labels = [t for r in rows for t in r["labels"]]
    joined = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    packed = PackedCollator(0)(
        [
            {
                "input_ids": ids,
                "labels": labels,
                "position_ids": [p for r in rows for p in range(len(r["input_ids"]))],
            }
        ]
    )
    assert not torch.allclose(joined, model(**packed, use_cache=False).loss)
