"""A 2:4-sparse tiny model, made locally, stays 2:4 through fine-tuning, saving and reloading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from ftcore.config import load_config
from ftcore.errors import FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model
from ftcore_llmcompressor.sparsity import sparse_linears, worst_group_zeros

DOC_TARGETS = [
    f"re:.*{name}.weight"
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
]
PRUNING = {
    "finetuning_stage": {
        "finetuning_modifiers": {"ConstantPruningModifier": {"targets": DOC_TARGETS, "start": 0}}
    }
}


def base_config(tmp_path: Path, base_model: str, **keys) -> dict:
    return {
        "base_model": base_model,
        "datasets": [{"path": data.write_jsonl(tmp_path / "add.jsonl", data.addition_rows(1))}],
        "sequence_len": 16,
        "micro_batch_size": 4,
        "learning_rate": 1e-2,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def assert_two_of_four(model) -> None:
    layers = sparse_linears(model)
    assert len(layers) == 14
    worst = {name: worst_group_zeros(layer.weight) for name, layer in layers.items()}
    assert min(worst.values()) >= 2, {k: v for k, v in worst.items() if v < 2}


@pytest.fixture(scope="module")
def sparse_model(tmp_path_factory):
    """Made with `ftcore sparsify` (one-shot SparseGPT 2:4) from a dense tiny model."""
    root = tmp_path_factory.mktemp("sparsify")
    dense = save_tiny_model(str(root / "dense"), "llama", seed=0)
    config = root / "sparsify.yml"
    config.write_text(json.dumps(base_config(root, dense)))
    result = subprocess.run(
        [sys.executable, "-m", "ftcore", "sparsify", str(config), "--samples", "16", "--output", str(root / "sparse")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert_two_of_four(AutoModelForCausalLM.from_pretrained(str(root / "sparse")))
    return str(root / "sparse")


def fine_tune(tmp_path, sparse_model, **keys):
    cfg = base_config(
        tmp_path, sparse_model, plugins=["llmcompressor"], max_steps=4,
        llmcompressor={"recipe": PRUNING, "save_compressed": True}, **keys,
    )  # fmt: skip
    loaded = load_config(cfg)
    seen = {}
    loaded.host.add_observer(
        lambda name, kwargs: (
            seen.setdefault("trainer", kwargs.get("trainer"))
            if name == "ftcore_post_train"
            else None
        )
    )
    train(loaded)
    return cfg, seen["trainer"]


def test_full_fine_tuning_with_accumulation_keeps_two_of_four(tmp_path, sparse_model):
    cfg, trainer = fine_tune(tmp_path, sparse_model, gradient_accumulation_steps=2)
    assert_two_of_four(trainer.model)  # after training, in memory
    out = Path(cfg["output_dir"])
    assert "ConstantPruningModifier" in (out / "recipe.yaml").read_text()
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))  # after saving and reloading
    assert_two_of_four(reloaded)
    before = sparse_linears(AutoModelForCausalLM.from_pretrained(sparse_model))
    after = sparse_linears(reloaded)
    assert all(not torch.equal(after[name].weight, before[name].weight) for name in after)


def test_lora_merged_weights_stay_two_of_four(tmp_path, sparse_model):
    cfg, _ = fine_tune(
        tmp_path,
        sparse_model,
        adapter="lora",
        lora_r=4,
        lora_target_linear=True,
        learning_rate=5e-2,
    )
    out = Path(cfg["output_dir"])
    assert not (out / "adapter_config.json").exists()  # the merged sparse model is the output
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    assert_two_of_four(reloaded)
    before = sparse_linears(AutoModelForCausalLM.from_pretrained(sparse_model))
    assert any(
        not torch.equal(layer.weight, before[name].weight)
        for name, layer in sparse_linears(reloaded).items()
    )


def test_a_resumed_run_stays_sparse(tmp_path, sparse_model, plugin_site, monkeypatch):
    cfg = base_config(
        tmp_path, sparse_model, plugins=["llmcompressor", "ftcore.testing.plugins.stop_at_step"], max_steps=4, save_steps=2,
        llmcompressor={"recipe": PRUNING},
    )  # fmt: skip
    monkeypatch.setenv("STOP_AT_STEP", "2")
    train(load_config(cfg))
    monkeypatch.delenv("STOP_AT_STEP")
    train(load_config({**cfg, "resume_from_checkpoint": "auto"}))
    assert_two_of_four(AutoModelForCausalLM.from_pretrained(cfg["output_dir"]))


QUANTIZATION = {
    "quant_stage": {
        "quant_modifiers": {
            "QuantizationModifier": {"targets": ["Linear"], "scheme": "W8A8", "ignore": ["lm_head"]}
        }
    }
}


def recipe_history(folder) -> list[str]:
    """The modifiers of a saved ``recipe.yaml``, stage by stage."""
    history = yaml.safe_load((Path(folder) / "recipe.yaml").read_text())
    return [name for stage in history.values() for group in stage.values() for name in group]


def test_a_quantization_stage_shrinks_the_files_and_keeps_the_zeros(tmp_path, sparse_model):
    recipe = {**PRUNING, **QUANTIZATION}
    sparse_only, _ = fine_tune(tmp_path / "a", sparse_model)
    cfg = base_config(
        tmp_path / "b",
        sparse_model,
        plugins=["llmcompressor"],
        max_steps=4,
        llmcompressor={"recipe": recipe, "save_compressed": True},
    )
    train(load_config(cfg))
    size = lambda folder: sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))  # noqa: E731
    assert size(cfg["output_dir"]) < 0.6 * size(sparse_only["output_dir"])
    assert_two_of_four(AutoModelForCausalLM.from_pretrained(cfg["output_dir"]))
    # the whole history, in order: sparsify's stage, fine-tuning's, then quantization's
    assert recipe_history(cfg["output_dir"]) == [
        "SparseGPTModifier", "ConstantPruningModifier", "QuantizationModifier"
    ]  # fmt: skip


def test_lora_then_quantization_records_no_fine_tuning_stage(tmp_path, sparse_model):
    """No session runs under LoRA (the sparse base is frozen): no empty stage is recorded."""
    cfg = base_config(
        tmp_path, sparse_model, plugins=["llmcompressor"], max_steps=2, adapter="lora", lora_r=4,
        lora_target_linear=True, llmcompressor={"recipe": {**PRUNING, **QUANTIZATION}},
    )  # fmt: skip
    train(load_config(cfg))
    assert recipe_history(cfg["output_dir"]) == ["SparseGPTModifier", "QuantizationModifier"]


def test_a_recipe_that_matches_nothing_is_an_error(tmp_path, sparse_model):
    recipe = {
        "s": {
            "s_modifiers": {
                "ConstantPruningModifier": {"targets": ["re:.*attention_dense$"], "start": 0}
            }
        }
    }
    cfg = base_config(
        tmp_path,
        sparse_model,
        plugins=["llmcompressor"],
        max_steps=1,
        llmcompressor={"recipe": recipe},
    )
    with pytest.raises(FtcoreError) as info:
        train(load_config(cfg))
    assert str(info.value).startswith(
        "llmcompressor.recipe: s_stage.ConstantPruningModifier matches no module of the model"
    )


def test_the_block_is_required(tmp_path, sparse_model):
    from ftcore.errors import ConfigError

    with pytest.raises(ConfigError, match="llmcompressor: required"):
        load_config(base_config(tmp_path, sparse_model, plugins=["llmcompressor"]))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--structure", "3:2"], "N:M with 0 < N < M"),
        (["--structure", "unstructured", "--sparsity", "1.5"], "--sparsity"),
        (["--structure", "2:4", "--sparsity", "0.9"], "--sparsity is for --structure unstructured"),
        (["--samples", "0"], "--samples"),
    ],
)
def test_sparsify_refuses_options_that_cannot_apply(tmp_path, options, problem):
    config = tmp_path / "sparsify.yml"
    config.write_text(json.dumps(base_config(tmp_path, str(tmp_path / "unused"))))
    result = subprocess.run([sys.executable, "-m", "ftcore", "sparsify", str(config), *options],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 2 and problem in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_sparsify_keeps_a_folder_that_holds_files_and_never_replaces_its_input(
    tmp_path, sparse_model
):
    dense = save_tiny_model(str(tmp_path / "dense"), "llama", seed=0)
    config = tmp_path / "sparsify.yml"
    config.write_text(json.dumps(base_config(tmp_path, dense)))
    command = [sys.executable, "-m", "ftcore", "sparsify", str(config), "--samples", "16"]
    result = subprocess.run([*command, "--output", sparse_model], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode != 0 and "pass --overwrite to replace it" in result.stderr
    assert_two_of_four(AutoModelForCausalLM.from_pretrained(sparse_model))  # untouched
    result = subprocess.run([*command, "--output", dense, "--overwrite"], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode != 0 and "holds base_model; choose another folder" in result.stderr
    assert (Path(dense) / "config.json").is_file()
    # --overwrite replaces a folder whole, once the new model is written
    target = tmp_path / "again"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier run")
    result = subprocess.run([*command, "--output", str(target), "--overwrite"],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (target / "stale.txt").exists() and not list(tmp_path.glob(".again.ftcore-tmp"))
    assert_two_of_four(AutoModelForCausalLM.from_pretrained(str(target)))
