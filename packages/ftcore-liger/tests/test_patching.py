"""Which modules and functions the liger keys replace, per model type (CPU: nothing runs a kernel).

Liger patches transformers' modules process-wide, so every test restores them afterwards.
"""

from __future__ import annotations

import importlib
import logging
from types import SimpleNamespace

import pytest
import torch

from ftcore.config import load_config
from ftcore.errors import FtcoreError
from ftcore.pipeline import train
from ftcore.testing import build_tiny_model, data, save_tiny_model
from ftcore_liger.patching import KEY_TO_KWARGS, apply, plan

ALL_ON = {key: True for key in KEY_TO_KWARGS if key != "liger_cross_entropy"}


def settings(**keys):
    values = {key: None for key in KEY_TO_KWARGS} | {"liger_use_token_scaling": None}
    return SimpleNamespace(**(values | keys))


def patched_with(module, liger_class) -> bool:
    return getattr(module.forward, "__func__", None) is liger_class.forward


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gemma"])
def test_every_norm_mlp_rope_and_the_loss_forward_are_replaced(family):
    from liger_kernel.transformers import LigerGEGLUMLP, LigerRMSNorm, LigerSwiGLUMLP
    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    model = build_tiny_model(family)
    modeling = importlib.import_module(type(model).__module__)
    kwargs = apply(settings(**ALL_ON), model)
    glu = "geglu" if family == "gemma" else "swiglu"
    assert kwargs[glu] and kwargs["rope"] and kwargs["rms_norm"]
    assert kwargs["fused_linear_cross_entropy"] and not kwargs["cross_entropy"]
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
    assert len(norms) == 2 * 2 + 1 and all(patched_with(m, LigerRMSNorm) for m in norms)
    mlp_class = LigerGEGLUMLP if family == "gemma" else LigerSwiGLUMLP
    assert all(patched_with(layer.mlp, mlp_class) for layer in model.model.layers)
    assert modeling.apply_rotary_pos_emb is liger_rotary_pos_emb
    assert model.forward.__func__.__module__.startswith("liger_kernel.transformers.model.")


def test_only_the_requested_kernels_are_applied():
    from liger_kernel.transformers import LigerRMSNorm

    model = build_tiny_model("llama")
    original_forward = model.forward.__func__
    modeling = importlib.import_module(type(model).__module__)
    original_rope = modeling.apply_rotary_pos_emb
    apply(settings(liger_rms_norm=True), model)
    assert patched_with(model.model.norm, LigerRMSNorm)
    assert not patched_with(model.model.layers[0].mlp, LigerRMSNorm)
    assert model.forward.__func__ is original_forward
    assert modeling.apply_rotary_pos_emb is original_rope


def test_a_kernel_the_family_lacks_is_reported(caplog):
    model = build_tiny_model("llama")
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        kwargs = apply(settings(liger_layer_norm=True, liger_rms_norm=True), model)
    assert "liger_layer_norm has no effect on llama" in caplog.text
    assert "layer_norm" not in kwargs


def test_token_scaling_reaches_the_fused_loss():
    model = build_tiny_model("llama")
    apply(settings(liger_fused_linear_cross_entropy=True, liger_use_token_scaling=True), model)
    assert model.forward.ftcore_token_scaling


def test_an_unsupported_model_type_is_an_error_listing_the_supported_ones():
    with pytest.raises(FtcoreError, match=r"no kernels for model_type gpt2; supported: .*llama"):
        plan(settings(liger_rms_norm=True), "gpt2")


def test_config_rules(tmp_path):
    base = {
        "base_model": "unused", "plugins": ["liger"], "datasets": [{"path": "d.jsonl"}],
        "output_dir": str(tmp_path),
    }  # fmt: skip
    with pytest.raises(Exception, match="choose one of liger_cross_entropy"):
        load_config({**base, "liger_cross_entropy": True, "liger_fused_linear_cross_entropy": True})
    with pytest.raises(Exception, match="needs liger_fused_linear_cross_entropy"):
        load_config({**base, "liger_use_token_scaling": True})
    claims = load_config({**base, "liger_rope": True, "liger_fused_linear_cross_entropy": True})
    assert claims.cfg.liger_rope


def test_listing_the_plugin_with_nothing_on_warns(tmp_path, caplog):
    base = {
        "base_model": "unused", "plugins": ["liger"], "datasets": [{"path": "d.jsonl"}],
        "output_dir": str(tmp_path),
    }  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        load_config(base)
    assert "no liger_* kernel is set to true; nothing will be patched" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_training_without_a_gpu_says_so_before_loading(tmp_path):
    cfg = {
        "base_model": save_tiny_model(str(tmp_path / "tiny"), "llama"),
        "plugins": ["liger"],
        "liger_rms_norm": True,
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(1))}],
        "max_steps": 1,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
    }
    with pytest.raises(FtcoreError, match="need a CUDA GPU; remove the liger plugin"):
        train(load_config(cfg))
