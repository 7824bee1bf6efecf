"""Real runs on two GPUs (skipped elsewhere): FSDP2 and DeepSpeed ZeRO-3 train, save, resume on one
GPU and consolidate; the kernel plugins and LoRA train sharded under FSDP2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.testing import data, save_tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"),
]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small"
    return save_tiny_model(str(path), "llama", seed=0, hidden_size=256, intermediate_size=512,
                           num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4)  # fmt: skip


def config(tmp_path: Path, base_model: str, **keys) -> Path:
    cfg = {
        "base_model": base_model, "model_init": "random",
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(4))}],
        "sequence_len": 64, "micro_batch_size": 4, "max_steps": 4, "save_steps": 2,
        "learning_rate": 1e-3, "bf16": True, "output_dir": str(tmp_path / "out"),
        "dataset_prepared_path": str(tmp_path / "prepared"), **keys,
    }  # fmt: skip
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(cfg))
    return path


def ftcore(*args, env: dict | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "ftcore", *map(str, args)], capture_output=True,
                            text=True, timeout=600, env=env)  # fmt: skip
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stderr


def step_of(checkpoint: Path) -> int:
    return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]


def test_fsdp2_trains_saves_consolidates_and_resumes_on_one_gpu(tmp_path, base_model):
    path = config(tmp_path, base_model, fsdp_config={"state_dict_type": "SHARDED_STATE_DICT"})
    ftcore("train", path, "--nproc", 2)
    out = tmp_path / "out"
    assert (out / "checkpoint-4" / "pytorch_model_fsdp_0").is_dir()  # sharded checkpoints
    final = load_file(str(out / "model.safetensors"))  # a normal model at the end
    ftcore("consolidate", path, out / "checkpoint-4", "--output", tmp_path / "merged")
    merged = load_file(str(tmp_path / "merged" / "model.safetensors"))
    for name, value in final.items():
        torch.testing.assert_close(merged[name].float(), value.float(), rtol=1e-2, atol=1e-2)
    log = ftcore("train", path, "--nproc", 1, "max_steps=6", "resume_from_checkpoint=auto")
    assert "checkpoint-4" in log and step_of(out / "checkpoint-6") == 6


def test_fsdp2_runs_lora_with_the_cce_and_liger_kernels(tmp_path, base_model):
    path = config(tmp_path, base_model, plugins=["cce", "liger"], liger_rope=True,
                  liger_rms_norm=True, liger_glu_activation=True, adapter="lora",
                  lora_target_linear=True, fsdp_config={})  # fmt: skip
    ftcore("train", path, "--nproc", 2)
    adapter = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert adapter and all("lora" in name for name in adapter)
    manifest = json.loads((tmp_path / "out" / "ftcore_run.json").read_text())
    assert 0 < manifest["metrics"]["train_loss"] < 20


OPTIMIZER_PROBE = """
import json
from pathlib import Path

from transformers import TrainerCallback

from ftcore import hookimpl


def adam_moments(optimizer):
    # exp_avg tensors that are not all zero, found through the optimizer wrappers
    for _ in range(4):
        state = getattr(optimizer, "state", None)
        if state:
            return sum(int(bool(s["exp_avg"].abs().sum() > 0)) for s in state.values()
                       if "exp_avg" in s)
        optimizer = getattr(optimizer, "optimizer", None)
    return 0


class Probe(TrainerCallback):
    def __init__(self, output_dir):
        self.output_dir = output_dir

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        if state.is_world_process_zero:
            found = {"step": state.global_step, "moments": adam_moments(optimizer)}
            Path(self.output_dir, "adam-at-start.json").write_text(json.dumps(found))


class OptimizerProbe:
    @hookimpl
    def ftcore_callbacks(self, cfg, model):
        return [Probe(cfg.output_dir)]
"""


def test_deepspeed_zero3_trains_saves_and_resumes(tmp_path, base_model):
    (tmp_path / "optimizer_probe.py").write_text(OPTIMIZER_PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    path = config(tmp_path, base_model, deepspeed="zero3",
                  plugins=["optimizer_probe:OptimizerProbe"])  # fmt: skip
    ftcore("train", path, "--nproc", 2, env=env)
    out = tmp_path / "out"
    probe = out / "adam-at-start.json"
    assert json.loads(probe.read_text()) == {"step": 0, "moments": 0}  # a fresh optimizer
    assert any((out / "checkpoint-4").glob("global_step*"))
    assert load_file(str(out / "model.safetensors"))  # gathered at the end
    ftcore("consolidate", path, out / "checkpoint-4", "--output", tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    log = ftcore("train", path, "--nproc", 2, "max_steps=6", "resume_from_checkpoint=auto", env=env)
    assert "checkpoint-4" in log and step_of(out / "checkpoint-6") == 6
    # on one GPU: through DeepSpeed's universal checkpoint, converted once
    log = ftcore("train", path, "--nproc", 1, "max_steps=8", "resume_from_checkpoint=auto", env=env)
    assert "converting it to DeepSpeed's universal checkpoint" in log
    assert (out / "checkpoint-6" / "latest_universal").read_text() == "global_step6_universal"
    assert step_of(out / "checkpoint-8") == 8
    resumed = json.loads(probe.read_text())  # Adam's moments came back with the weights
    assert resumed["step"] == 6 and resumed["moments"] > 0
