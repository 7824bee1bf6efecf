"""``ftcore train`` with the cce plugin trains exactly as without it, and conflicts are caught."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.config import load_config
from ftcore.errors import ConfigError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model

OTHER_LOSS_HEAD = """
from ftcore import hookimpl
from ftcore.claims import Claim, ModelPart

@hookimpl
def ftcore_model_claims(cfg):
    return [Claim(ModelPart.LOSS_HEAD, key="fused_loss")]
"""


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    return save_tiny_model(str(path), "llama", seed=0, tie_word_embeddings=True)


def run_config(tmp_path: Path, base_model: str, plugins: list[str], **keys) -> dict:
    rows = data.addition_rows(1)[:40]
    return {
        "base_model": base_model,
        "plugins": plugins,
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", rows)}],
        "sequence_len": 32,
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "max_steps": 4,
        "learning_rate": 1e-2,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"sample_packing": True},
        {"adapter": "lora", "lora_target_modules": ["q_proj", "v_proj"],
         "lora_modules_to_save": ["lm_head"]},
    ],
    ids=["full", "packed", "lora+lm_head"],
)  # fmt: skip
def test_training_with_cce_ends_with_the_same_weights(tmp_path, base_model, keys):
    results = {}
    for name, plugins in {"plain": [], "cce": ["cce"]}.items():
        cfg = run_config(tmp_path / name, base_model, plugins, **keys)
        train(load_config(cfg))
        out = Path(cfg["output_dir"])
        weights = out / (
            "adapter_model.safetensors" if keys.get("adapter") else "model.safetensors"
        )
        results[name] = load_file(str(weights))
    assert results["plain"].keys() == results["cce"].keys()
    for key, value in results["plain"].items():
        torch.testing.assert_close(results["cce"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_two_loss_heads_are_a_config_error_naming_both(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.fused": OTHER_LOSS_HEAD})
    cfg = run_config(tmp_path, base_model, ["cce", "testplugins.fused"])
    with pytest.raises(ConfigError) as error:
        load_config(cfg)
    message = str(error.value)
    assert "cce" in message and "testplugins.fused" in message and "loss head" in message
    assert "cut_cross_entropy" in message
    load_config({**cfg, "cut_cross_entropy": False})  # turning one off resolves it
