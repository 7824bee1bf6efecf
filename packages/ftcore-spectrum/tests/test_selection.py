"""Selection per type, Spectrum files, the cache, and training only what was selected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model
from ftcore_spectrum import scan as scan_module
from ftcore_spectrum.selection import module_type, select_modules


def test_module_types_drop_the_layer_index():
    assert module_type("model.layers.3.self_attn.q_proj") == "self_attn.q_proj"
    assert module_type("model.layers.12.mlp.experts.7.down_proj") == "down_proj"
    assert module_type("model.layers.0.mlp.gate_proj") == "mlp.gate_proj"


def test_exactly_the_requested_fraction_per_type_is_selected():
    results = {
        f"model.layers.{i}.self_attn.q_proj": {"snr": i, "type": "self_attn.q_proj"}
        for i in range(8)
    }
    results |= {
        f"model.layers.{i}.mlp.up_proj": {"snr": -i, "type": "mlp.up_proj"} for i in range(4)
    }
    chosen = select_modules(results, 0.25)
    assert chosen == [
        "model.layers.0.mlp.up_proj",
        "model.layers.6.self_attn.q_proj",
        "model.layers.7.self_attn.q_proj",
    ]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(
        str(tmp_path_factory.mktemp("model") / "tiny"), "qwen3", seed=0, num_hidden_layers=4
    )


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FTCORE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    return {
        "base_model": base_model,
        "plugins": ["spectrum"],
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(1))}],
        "sequence_len": 16,
        "micro_batch_size": 8,
        "max_steps": 1,
        "learning_rate": 1e-2,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def test_a_training_step_changes_only_the_selected_parameters(tmp_path, base_model, cache_dir):
    cfg = run_config(
        tmp_path, base_model, spectrum_top_fraction=0.5, spectrum_unfreeze_embeddings=False
    )
    train(load_config(cfg))
    before = load_file(str(Path(base_model) / "model.safetensors"))
    after = load_file(str(Path(cfg["output_dir"]) / "model.safetensors"))
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    results = json.loads(next((cache_dir / "spectrum").glob("snr_results_*.json")).read_text())
    selected = set(select_modules(results, 0.5))
    matrices = {
        name.removesuffix(".weight") for name in after if name.removesuffix(".weight") in results
    }
    assert {m for m in matrices if f"{m}.weight" in changed} == selected
    assert len(selected) == len({e["type"] for e in results.values()}) * 2  # 2 of 4 layers per type
    assert "lm_head.weight" in changed and "model.embed_tokens.weight" not in changed
    assert all(name in changed for name in after if name.endswith("norm.weight"))


def test_a_spectrum_file_is_used_without_scanning(tmp_path, base_model, monkeypatch):
    layers = [f"model.layers.{i}" for i in range(4)]
    kinds = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]  # fmt: skip
    results = {
        f"{layer}.{kind}": {"snr": float(i), "type": kind}
        for i, layer in enumerate(layers)
        for kind in kinds
    }
    path = tmp_path / "snr.json"
    path.write_text(json.dumps(results))
    monkeypatch.setattr(scan_module, "scan_model", lambda *a, **k: pytest.fail("scanned"))
    cfg = run_config(tmp_path, base_model, spectrum_snr_file=str(path), spectrum_top_fraction=0.25)
    loaded = load_config(cfg)
    train(loaded)
    assert "^model\\.layers\\.3\\.mlp\\.down_proj\\." in loaded.cfg.unfrozen_parameters
    assert not any("layers\\.2" in p for p in loaded.cfg.unfrozen_parameters)


def test_a_file_from_the_spectrum_project_with_extra_entries_works(tmp_path, base_model):
    kinds = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]  # fmt: skip
    entries = {
        f"model.layers.{i}.{kind}": {"snr": float(i), "type": kind}
        for i in range(4)
        for kind in kinds
    }
    # Spectrum's files also rank the head, the embeddings and the norms (norms as Infinity).
    text = json.dumps(entries)[:-1] + (
        ', "lm_head": {"snr": 0.5, "type": "lm_head"}, "model.embed_tokens": {"snr": 0.1, '
        '"type": "model.embed_tokens"}, "model.norm": {"snr": Infinity, "type": "model.norm"}}'
    )
    path = tmp_path / "snr_results_upstream.json"
    path.write_text(text)
    loaded = load_config(
        run_config(tmp_path, base_model, spectrum_snr_file=str(path), spectrum_top_fraction=0.25)
    )
    train(loaded)
    assert "^model\\.layers\\.3\\.self_attn\\.q_proj\\." in loaded.cfg.unfrozen_parameters


def test_the_scan_is_cached_and_reused(tmp_path, base_model, monkeypatch, cache_dir):
    train(load_config(run_config(tmp_path / "a", base_model)))
    files = list((cache_dir / "spectrum").glob("snr_results_*.json"))
    assert len(files) == 1
    monkeypatch.setattr(scan_module, "scan_model", lambda *a, **k: pytest.fail("scanned again"))
    train(load_config(run_config(tmp_path / "b", base_model)))


def test_a_file_for_another_model_is_refused(tmp_path, base_model):
    path = tmp_path / "snr.json"
    path.write_text(
        json.dumps({"model.layers.40.mlp.up_proj": {"snr": 1.0, "type": "mlp.up_proj"}})
    )
    with pytest.raises(FtcoreError, match="lack 28 of this model's 28 weight matrices"):
        train(load_config(run_config(tmp_path, base_model, spectrum_snr_file=str(path))))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        ("[1, 2, 3]", "is not a Spectrum SNR file"),
        ('{"model.layers.0.mlp.up_proj": {"snr": "high", "type": "mlp.up_proj"}}',
         "the snr of model.layers.0.mlp.up_proj is 'high', not a number"),
    ],
)  # fmt: skip
def test_an_unusable_snr_file_is_a_config_error(tmp_path, base_model, text, problem):
    path = tmp_path / "snr.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(run_config(tmp_path, base_model, spectrum_snr_file=str(path)))
    (line,) = [line for line in str(info.value).splitlines() if "spectrum_snr_file" in line]
    assert line.startswith(f"  spectrum_snr_file: {path}") and problem in line


def test_a_matrix_without_a_number_for_its_snr_ranks_last():
    results = {
        "model.layers.0.mlp.up_proj": {"snr": float("nan"), "type": "mlp.up_proj"},
        "model.layers.1.mlp.up_proj": {"snr": 0.5, "type": "mlp.up_proj"},
    }
    assert select_modules(results, 0.5) == ["model.layers.1.mlp.up_proj"]


def test_resuming_with_another_selection_says_so(tmp_path, base_model, cache_dir):
    first = run_config(tmp_path, base_model, max_steps=1, save_steps=1, spectrum_top_fraction=0.5)
    train(load_config(first))
    resumed = {**first, "max_steps": 2, "resume_from_checkpoint": "auto",
               "spectrum_top_fraction": 1.0}  # fmt: skip
    with pytest.raises(FtcoreError, match="was trained with another set of trained parameters"):
        train(load_config(resumed))


def test_spectrum_with_an_adapter_is_a_config_error(tmp_path, base_model):
    with pytest.raises(ConfigError, match="adapter: spectrum trains a subset of the full model"):
        load_config(run_config(tmp_path, base_model, adapter="lora"))


def test_cli_scan_prints_the_selection_and_writes_json(tmp_path, base_model):
    import subprocess
    import sys

    config = tmp_path / "run.yml"
    config.write_text(json.dumps(run_config(tmp_path, base_model)))
    out = tmp_path / "scan.json"
    result = subprocess.run(
        [sys.executable, "-m", "ftcore", "spectrum", "scan", str(config), "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "self_attn.q_proj" in result.stdout and "2/4" in result.stdout
    assert result.stdout.strip().endswith(f"wrote 28 SNR values to {out}")
    assert len(json.loads(out.read_text())) == 28
