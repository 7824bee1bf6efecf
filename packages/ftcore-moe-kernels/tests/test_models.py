"""Every tested family's model gives transformers' loss and gradients with ``scattermoe``;
``ftcore train`` uses it through the plugin; wrong configs are clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, loss_and_gradients, save_tiny_model
from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.experts import register
from ftcore_moe_kernels.models import TESTED_MODEL_TYPES, apply_experts_implementation

COMMON = dict(
    hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128, num_experts=4,
    n_routed_experts=4, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=256,
    first_k_dense_replace=0, n_group=1, topk_group=1, kv_lora_rank=16, q_lora_rank=16,
    qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, decoder_sparse_step=1, mlp_only_layers=[],
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip
PER_FAMILY = {
    "qwen3_next": {"layer_types": ["full_attention", "full_attention"]},
    "deepseek_v3": {"head_dim": 8},
    "phimoe": {"router_jitter_noise": 0.0, "input_jitter_noise": 0.0},
    "gemma4_text": {
        "enable_moe_block": True,
        "top_k_experts": 2,
        "global_head_dim": 16,
        "layer_types": ["full_attention", "full_attention"],
    },
}


def tiny(model_type: str, **overrides):
    config = AutoConfig.for_model(
        model_type, **{**COMMON, **PER_FAMILY.get(model_type, {}), **overrides}
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()


def assert_unchanged_by(model, inputs, change, rtol, atol):
    """The loss of ``model`` on ``inputs`` and every gradient (to ``10 x rtol``) are the same
    after ``change()``; returns the gradients."""
    plain, plain_grads = loss_and_gradients(model, inputs)
    change()
    patched, grads = loss_and_gradients(model, inputs)
    torch.testing.assert_close(patched.loss, plain.loss, rtol=rtol, atol=atol)
    assert grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=10 * rtol, atol=atol, msg=name)
    return plain_grads


@pytest.fixture(autouse=True)
def registered():
    register()


@pytest.mark.parametrize("model_type", TESTED_MODEL_TYPES)
def test_loss_and_gradients_equal_transformers(model_type):
    model = tiny(model_type)
    ids = torch.randint(3, 100, (2, 12))
    switched = []

    def switch():
        switched.append(apply_experts_implementation(model, "scattermoe"))

    assert_unchanged_by(model, {"input_ids": ids, "labels": ids}, switch, rtol=1e-5, atol=1e-6)
    assert switched[0] >= 1


def test_the_triton_kernels_run_a_whole_model(monkeypatch):
    monkeypatch.setattr(grouped, "BACKEND", "triton")  # the interpreter on the CPU
    model = tiny("qwen3_moe", num_hidden_layers=1)
    ids = torch.randint(3, 100, (1, 10))
    inputs = {"input_ids": ids, "labels": ids}
    assert_unchanged_by(model, inputs, lambda: apply_experts_implementation(model, "scattermoe"),
                        rtol=1e-4, atol=1e-5)  # fmt: skip


def test_a_model_without_dispatched_experts_is_an_error():
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=128))  # fmt: skip
    with pytest.raises(FtcoreError, match=r"model_type llama\) has no experts"):
        apply_experts_implementation(model, "scattermoe")


def test_an_unsupported_expert_layout_is_an_error():
    model = tiny(
        "gpt_oss",
        head_dim=16,
        sliding_window=64,
        layer_types=["full_attention"],
        num_hidden_layers=1,
    )
    with pytest.raises(FtcoreError, match="scattermoe does not support the experts of gpt_oss"):
        apply_experts_implementation(model, "scattermoe")


@pytest.mark.parametrize("kernel", ["scattermoe", "sonicmoe"])
def test_quantized_experts_are_an_error(kernel):
    """An FP8 checkpoint's experts carry scales the kernels would ignore."""
    from transformers.integrations.finegrained_fp8 import ALL_FP8_EXPERTS_FUNCTIONS, FP8Experts
    from transformers.integrations.moe import use_experts_implementation

    model = tiny("qwen3_moe", num_hidden_layers=1)
    fp8 = use_experts_implementation(
        experts_class=FP8Experts, experts_interface=ALL_FP8_EXPERTS_FUNCTIONS
    )(model.config, block_size=(16, 16))
    model.model.layers[0].mlp.experts = fp8
    with pytest.raises(FtcoreError, match=r"quantized torch.float8_e4m3fn weights; load the model"):
        apply_experts_implementation(model, kernel)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "qwen3_moe", seed=0)


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    return {
        "base_model": base_model, "plugins": ["moe-kernels"],
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(1))}],
        "sequence_len": 16, "micro_batch_size": 4, "max_steps": 3, "learning_rate": 1e-2,
        "bf16": False, "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"), **keys,
    }  # fmt: skip


def test_training_with_scattermoe_ends_with_the_same_weights(tmp_path, base_model):
    weights = {}
    for name, keys in {"eager": {}, "scattermoe": {"use_scattermoe": True}}.items():
        cfg = run_config(tmp_path / name, base_model, **keys)
        train(load_config(cfg))
        weights[name] = load_file(str(Path(cfg["output_dir"]) / "model.safetensors"))
    for key, value in weights["eager"].items():
        torch.testing.assert_close(weights["scattermoe"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_config_rules(tmp_path, base_model):
    with pytest.raises(ConfigError, match="use_scattermoe and use_sonicmoe exclude each other"):
        load_config(run_config(tmp_path, base_model, use_scattermoe=True, use_sonicmoe=True))
    with pytest.raises(ConfigError, match="grouped_mm conflicts with use_scattermoe"):
        load_config(
            run_config(
                tmp_path, base_model, use_scattermoe=True, experts_implementation="grouped_mm"
            )
        )


def test_scattermoe_on_a_gpu_without_triton_says_so_before_loading(tmp_path, base_model,
                                                                    monkeypatch):  # fmt: skip
    import importlib.util

    import ftcore.modeling

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "triton" else find_spec(name, *a))  # fmt: skip
    monkeypatch.setattr(ftcore.modeling, "build_model", None)  # it must not get that far
    with pytest.raises(FtcoreError, match="triton is not installed: install it"):
        train(load_config(run_config(tmp_path, base_model, use_scattermoe=True)))


@pytest.mark.parametrize("kernel", ["scattermoe", "sonicmoe"])
def test_a_kernel_turned_off_and_asked_for_is_a_config_error(tmp_path, base_model, kernel):
    with pytest.raises(ConfigError, match=f"use_{kernel}: false conflicts with experts_impl"):
        load_config(run_config(tmp_path, base_model, experts_implementation=kernel,
                               **{f"use_{kernel}": False}))  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
@pytest.mark.parametrize(
    ("keys", "message"),
    [({"use_sonicmoe": True}, "use_sonicmoe needs a CUDA GPU"),
     ({"experts_implementation": "deepgemm"}, "deepgemm needs a CUDA GPU; none is visible")],
)  # fmt: skip
def test_gpu_only_kernels_without_a_gpu_say_so_before_loading(tmp_path, base_model, keys, message,
                                                              monkeypatch):  # fmt: skip
    import ftcore.modeling

    def build_model(cfg):
        raise AssertionError("the model was built before the check")

    monkeypatch.setattr(ftcore.modeling, "build_model", build_model)
    with pytest.raises(FtcoreError, match=message):
        train(load_config(run_config(tmp_path, base_model, **keys)))


def test_the_readme_lists_exactly_the_tested_models():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("<!-- supported-models")[1].split("-->", 1)[1].split("<!--")[0]
    assert block.strip() == ", ".join(TESTED_MODEL_TYPES)


def test_lora_on_the_experts_trains_through_scattermoe(tmp_path, base_model, monkeypatch):
    """The same adapter as eager; under scattermoe peft never folds the expert stacks."""
    from test_lora import count_folds

    adapters = {}
    for name, keys in {"eager": {}, "scattermoe": {"use_scattermoe": True}}.items():
        cfg = run_config(tmp_path / name, base_model, adapter="lora", lora_r=4,
                         lora_target_modules=["q_proj"],
                         lora_target_parameters=["mlp.experts.gate_up_proj",
                                                 "mlp.experts.down_proj"], **keys)  # fmt: skip
        folds = count_folds(monkeypatch)
        train(load_config(cfg))
        assert (folds == []) == (name == "scattermoe"), f"{name}: {len(folds)} folds"
        adapters[name] = load_file(str(Path(cfg["output_dir"]) / "adapter_model.safetensors"))
    assert any("experts" in key for key in adapters["eager"])
    for key, value in adapters["eager"].items():
        torch.testing.assert_close(
            adapters["scattermoe"][key], value, rtol=1e-3, atol=1e-4, msg=key
        )


def test_the_reference_path_runs_where_triton_is_missing():
    code = """
import sys
sys.modules["triton"] = None  # as on a machine without it: importing it fails
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from ftcore_moe_kernels.experts import register
from ftcore_moe_kernels.models import apply_experts_implementation
register()
model = AutoModelForCausalLM.from_config(AutoConfig.for_model("qwen3_moe", hidden_size=32,
    intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
    num_key_value_heads=1, head_dim=16, vocab_size=64, num_experts=4, num_experts_per_tok=2))
apply_experts_implementation(model, "scattermoe")
ids = torch.randint(0, 64, (1, 8))
model(input_ids=ids, labels=ids).loss.backward()
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
