"""Several integration packages active in one run, as a user would combine them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcore.config import load_config
from ftcore.errors import ConfigError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "packages" / "ftcore-lm-eval" / "tests" / "tasks"


@pytest.mark.slow
def test_grokfast_spectrum_swanlab_and_lm_eval_in_one_run(tmp_path, monkeypatch, hook_recorder):
    monkeypatch.setenv("FTCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SWANLAB_INTERACTIVE", "false")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    base = save_tiny_model(str(tmp_path / "tiny"), "llama", seed=0)
    cfg = {
        "base_model": base,
        "plugins": ["grokfast", "spectrum", "swanlab", "lm-eval"],
        "datasets": [{"path": data.write_jsonl(tmp_path / "add.jsonl", data.addition_rows(2))}],
        "sequence_len": 16,
        "micro_batch_size": 16,
        "max_steps": 6,
        "logging_steps": 2,
        "learning_rate": 3e-3,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        "spectrum_top_fraction": 0.5,
        "swanlab_project": "together",
        "swanlab_mode": "offline",
        "swanlab_workspace": "team",
        "lm_eval_tasks": ["toy_add_mc"],
        "lm_eval_include_path": str(TASKS),
        "lm_eval_limit": 8,
    }
    loaded = load_config(cfg)
    assert loaded.host.names == ["grokfast", "spectrum", "swanlab", "lm-eval"]
    train(loaded)
    out = Path(cfg["output_dir"])
    manifest = json.loads((out / "ftcore_run.json").read_text())
    assert [p["name"] for p in manifest["plugins"]] == [
        "grokfast",
        "spectrum",
        "swanlab",
        "lm-eval",
    ]
    assert loaded.cfg.unfrozen_parameters  # spectrum chose what trains
    assert list((out / "swanlog").glob("run-*/run-*.swanlab"))  # swanlab tracked the run
    results = json.loads(next(out.glob("lm_eval_results/*/results.json")).read_text())
    assert "acc,none" in results["summary"]["toy_add_mc"]  # lm-eval ran after training
    assert results["runs"][0]["n-samples"]["toy_add_mc"]["effective"] == 8
    for hook in ("ftcore_callbacks", "ftcore_post_model_build", "ftcore_post_train_unload"):
        assert hook in hook_recorder.names


def test_plugins_that_want_the_trained_parameters_conflict_clearly(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["spectrum", "llmcompressor"], "adapter": "lora"})
    message = str(info.value)
    assert "adapter: spectrum trains a subset of the full model" in message
    assert "llmcompressor: required" in message


def test_cce_and_a_liger_loss_kernel_conflict_naming_both_keys():
    base = {"plugins": ["liger", "cce"], "liger_rope": True}
    for key in ("liger_fused_linear_cross_entropy", "liger_cross_entropy"):
        with pytest.raises(ConfigError) as info:
            load_config({**base, key: True})
        message = str(info.value)
        assert "the loss head is replaced by both plugin 'liger'" in message
        assert f"({key})" in message and "plugin 'cce' (cut_cross_entropy)" in message
    # Liger's RoPE, RMSNorm and GLU kernels with CCE for the loss: the documented fast setup.
    cfg = load_config({**base, "liger_rms_norm": True, "liger_glu_activation": True}).cfg
    assert cfg.cut_cross_entropy and cfg.liger_rope


def test_two_plugins_that_each_replace_the_loss_conflict():
    # kd's loss won silently, while diffusion still added its mask token and logged samples
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["kd", "diffusion"]})
    message = str(info.value)
    assert "the loss head is replaced by both plugin 'kd' (kd_trainer) and plugin 'diffusion'" in (
        message
    )
    assert "set kd_trainer: false" in message
    load_config({"plugins": ["kd", "diffusion"], "kd_trainer": False})  # one loss: fine
