"""Checks that need a CUDA GPU; skipped in CI, run on the lent GPU machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ftcore.config import load_config
from ftcore.pipeline import train
from ftcore.testing import save_tiny_model

pytestmark = pytest.mark.gpu


def config(tmp_path: Path, **keys) -> dict:
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"text": f"{a}+{b}={a + b}"}) + "\n" for a in range(8) for b in range(8))
    )
    return {
        "base_model": save_tiny_model(
            str(tmp_path / "tiny"), "llama", hidden_size=128, intermediate_size=256, head_dim=32
        ),
        "datasets": [{"path": str(data)}],
        "sequence_len": 16,
        "micro_batch_size": 8,
        "max_steps": 6,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def losses(output_dir: str) -> list[float]:
    state = next(Path(output_dir).glob("checkpoint-*/trainer_state.json"))
    return [e["loss"] for e in json.loads(state.read_text())["log_history"] if "loss" in e]


def test_qlora_trains_a_4bit_model_and_saves_the_adapter(tmp_path):
    cfg = config(tmp_path, adapter="qlora", load_in_4bit=True, lora_r=8, learning_rate=1e-2)
    loaded = load_config(cfg)
    seen = {}

    def spy(name, kwargs):  # look at the model's layers when the hook fires
        if name == "ftcore_post_model_load":
            seen["4bit"] = any(type(m).__name__ == "Linear4bit" for m in kwargs["model"].modules())

    loaded.host.add_observer(spy)
    train(loaded)
    assert seen["4bit"]
    out = Path(cfg["output_dir"])
    assert (out / "adapter_model.safetensors").is_file()
    run = losses(cfg["output_dir"])
    assert run[-1] < run[0]


def test_bf16_auto_trains_in_bf16_on_the_gpu(tmp_path):
    cfg = config(tmp_path, bf16="auto")
    metrics = train(load_config(cfg))
    args = torch.load(Path(cfg["output_dir"]) / "training_args.bin", weights_only=False)
    assert args.bf16 is True
    assert metrics["train_loss"] > 0


def test_packed_loss_equals_unpacked_loss_on_cuda():
    from ftcore.data.packing import PackedCollator, PaddingCollator
    from ftcore.data.strategies import IGNORE_INDEX
    from ftcore.testing import build_tiny_model

    model = build_tiny_model("qwen3", seed=0, attn_implementation="sdpa").cuda().eval()
    rows = []
    for n in (5, 9, 3, 12):
        ids = list(range(10, 10 + n))
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX, *ids[1:]]})
    total, count = 0.0, 0
    for row in rows:
        batch = {k: v.cuda() for k, v in PaddingCollator(0)([row]).items()}
        n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        total, count = total + model(**batch, use_cache=False).loss * n, count + n
    packed = {
        "input_ids": [t for r in rows for t in r["input_ids"]],
        "labels": [t for r in rows for t in r["labels"]],
        "position_ids": [p for r in rows for p in range(len(r["input_ids"]))],
    }
    batch = {k: v.cuda() for k, v in PackedCollator(0)([packed]).items()}
    torch.testing.assert_close(
        model(**batch, use_cache=False).loss * count, total, rtol=1e-4, atol=1e-4
    )
