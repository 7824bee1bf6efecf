"""Grokfast inside ``ftcore train``: once per update, with LoRA, and exact across resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.config import load_config
from ftcore.errors import ConfigError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model
from ftcore_grokfast.filter import STATE_KEY, GradFilterEMA


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    rows = [{"text": f"{a}+{b}={a + b}" + "." * ((a + b) % 4)} for a in range(6) for b in range(4)]
    return {
        "base_model": base_model,
        "plugins": ["grokfast"],
        "datasets": [{"path": data.write_jsonl(tmp_path / "data.jsonl", rows)}],
        "sequence_len": 16,
        "micro_batch_size": 4,
        "max_steps": 6,
        "learning_rate": 1e-2,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def test_defaults_and_the_swapped_values_of_the_axolotl_example():
    cfg = load_config({"plugins": ["grokfast"]}).cfg
    assert (cfg.grokfast_alpha, cfg.grokfast_lamb) == (0.98, 2.0)
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["grokfast"], "grokfast_alpha": 2.0, "grokfast_lamb": 0.98})
    assert "the two look swapped" in str(info.value)
    with pytest.raises(ConfigError) as info:  # true is no number: not a swap, one message
        load_config({"plugins": ["grokfast"], "grokfast_alpha": True, "grokfast_lamb": 0.5})
    assert "swapped" not in str(info.value) and "grokfast_alpha: " in str(info.value)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_an_amplification_that_is_not_finite_is_rejected(value):
    # inf passed validation and trained a model of NaN weights, reported as a success
    with pytest.raises(ConfigError, match="grokfast_lamb: must be a finite number"):
        load_config({"plugins": ["grokfast"], "grokfast_lamb": value})


def test_the_filter_runs_once_per_update_with_gradient_accumulation(
    tmp_path, base_model, monkeypatch
):
    calls = []
    original = GradFilterEMA.filter_gradients

    def counting(self, optimizer):
        calls.append(1)
        return original(self, optimizer)

    monkeypatch.setattr(GradFilterEMA, "filter_gradients", counting)
    train(load_config(run_config(tmp_path, base_model, gradient_accumulation_steps=3, max_steps=4)))
    assert len(calls) == 4


def test_with_lora_only_adapter_weights_carry_filter_state(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, adapter="lora", lora_r=4, max_steps=2, save_steps=2)
    train(load_config(cfg))
    optimizer = torch.load(
        Path(cfg["output_dir"]) / "checkpoint-2" / "optimizer.pt", weights_only=False
    )
    with_filter = [s for s in optimizer["state"].values() if STATE_KEY in s]
    assert with_filter and len(with_filter) == len(optimizer["state"])
    model_state = load_file(str(Path(cfg["output_dir"]) / "adapter_model.safetensors"))
    assert len(with_filter) == len(model_state)  # one buffer per LoRA matrix, none for the base


def weights(output_dir):
    return load_file(str(Path(output_dir) / "model.safetensors"))


def test_a_resumed_run_continues_exactly_like_an_uninterrupted_one(
    tmp_path, base_model, plugin_site, monkeypatch
):
    keys = {"save_steps": 3, "plugins": ["grokfast", "ftcore.testing.plugins.stop_at_step"]}
    straight = run_config(tmp_path / "a", base_model, **keys)
    train(load_config(straight))

    resumed = run_config(tmp_path / "b", base_model, **keys)
    monkeypatch.setenv("STOP_AT_STEP", "3")
    train(load_config(resumed))
    monkeypatch.delenv("STOP_AT_STEP")
    checkpoint = Path(resumed["output_dir"]) / "checkpoint-3" / "optimizer.pt"
    saved = torch.load(checkpoint, weights_only=False)
    assert all(STATE_KEY in state for state in saved["state"].values())
    train(load_config({**resumed, "resume_from_checkpoint": "auto"}))
    a, b = weights(straight["output_dir"]), weights(resumed["output_dir"])
    assert all(torch.equal(a[name], b[name]) for name in a)

    # Control: losing the filter state at the checkpoint changes the result.
    lost = run_config(tmp_path / "c", base_model, **keys)
    monkeypatch.setenv("STOP_AT_STEP", "3")
    train(load_config(lost))
    monkeypatch.delenv("STOP_AT_STEP")
    ckpt = Path(lost["output_dir"]) / "checkpoint-3" / "optimizer.pt"
    state = torch.load(ckpt, weights_only=False)
    for entry in state["state"].values():
        entry.pop(STATE_KEY)
    torch.save(state, ckpt)
    train(load_config({**lost, "resume_from_checkpoint": "auto"}))
    c = weights(lost["output_dir"])
    assert not all(torch.equal(a[name], c[name]) for name in a)
