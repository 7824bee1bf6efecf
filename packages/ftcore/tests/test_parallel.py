"""More than one process: fsdp_config / deepspeed translated for the Trainer, the torchrun launch
of ``ftcore train --nproc``, a real 2-process gloo run on the CPU, and ``ftcore consolidate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.launch import Launch, torchrun_command
from ftcore.testing import data, save_tiny_model
from ftcore.training.arguments import training_arguments
from ftcore.training.parallel import DEEPSPEED_PRESETS, deepspeed_config, parallel_arguments


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    return {
        "base_model": base_model,
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(2))}],
        "sequence_len": 32, "micro_batch_size": 2, "max_steps": 4, "learning_rate": 1e-3,
        "bf16": False, "save_steps": 2, "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"), **keys,
    }  # fmt: skip


def test_fsdp_config_becomes_the_trainers_fsdp2_plugin(tmp_path, base_model, monkeypatch):
    loaded = load_config(run_config(tmp_path, base_model, fsdp_config={
        "fsdp_offload_params": True, "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
        "activation_checkpointing": True, "reshard_after_forward": False,
    }))  # fmt: skip
    fsdp = loaded.cfg.fsdp_config
    assert fsdp.cpu_offload and fsdp.transformer_layer_cls_to_wrap == ["LlamaDecoderLayer"]
    monkeypatch.setattr("ftcore.dist.has_accelerator", lambda: True)
    assert parallel_arguments(loaded.cfg)["fsdp"] is True
    monkeypatch.setattr("ftcore.training.arguments.has_accelerator", lambda: False)  # use_cpu
    args = training_arguments(loaded.cfg, loaded.host, 100, False)
    assert args.fsdp_plugin_args == {
        "fsdp_version": 2, "cpu_offload": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_cls_names_to_wrap": "LlamaDecoderLayer", "cpu_ram_efficient_loading": False,
        "state_dict_type": "SHARDED_STATE_DICT", "activation_checkpointing": True,
        "reshard_after_forward": False,
    }  # fmt: skip


def test_deepspeed_presets_files_and_inline_configs(tmp_path, base_model, monkeypatch):
    assert deepspeed_config("zero3")["zero_optimization"]["stage"] == 3
    assert deepspeed_config("zero3") is not DEEPSPEED_PRESETS["zero3"]
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": "auto"}))
    gathered = deepspeed_config(str(path))["zero_optimization"]
    assert gathered["stage3_gather_16bit_weights_on_model_save"] is True  # a normal final model
    inline = {"zero_optimization": {"stage": 2}}
    assert deepspeed_config(inline) == inline
    loaded = load_config(run_config(tmp_path, base_model, deepspeed="zero2"))
    monkeypatch.setattr("ftcore.dist.has_accelerator", lambda: True)
    monkeypatch.setattr("ftcore.training.parallel.require_deepspeed", lambda: None)
    arguments = parallel_arguments(loaded.cfg)
    assert arguments["deepspeed"]["zero_optimization"]["stage"] == 2


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"fsdp_config": {}, "deepspeed": "zero3"}, "choose FSDP or DeepSpeed"),
        ({"fsdp_config": {}, "gradient_checkpointing": True}, "activation_checkpointing: true"),
        ({"deepspeed": "zero9"}, "neither a preset"),
        ({"deepspeed": {"zero_optimization": {"stage": 4}}}, "must be 0, 1, 2 or 3"),
        ({"fsdp_config": {"version": 1}}, "fsdp_config.version"),
        ({"fsdp_config": {"fsdp_reshard": True}}, "fsdp_config.fsdp_reshard: unknown key"),
        (
            {"fsdp_config": {"cpu_offload": True, "fsdp_offload_params": False}},
            "cpu_offload and fsdp_offload_params set the same key; keep one",
        ),
        ({"fsdp_config": {}, "adapter": "qlora", "load_in_4bit": True}, "use adapter: lora"),
    ],
)
def test_impossible_multi_gpu_configs_are_config_errors(tmp_path, base_model, keys, message):
    with pytest.raises(ConfigError, match=message):
        load_config(run_config(tmp_path, base_model, **keys))


def test_sharding_without_a_gpu_says_so(tmp_path, base_model, monkeypatch):
    loaded = load_config(run_config(tmp_path, base_model, fsdp_config={}))
    monkeypatch.setattr("ftcore.dist.has_accelerator", lambda: False)
    with pytest.raises(FtcoreError, match="fsdp_config shards the model across CUDA GPUs"):
        parallel_arguments(loaded.cfg)


def test_launch_commands_for_one_node_and_for_a_cluster(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    local = torchrun_command(Launch(4), ["train", "cfg.yml", "lr=1e-4"])
    assert local[1:] == ["-m", "ftcore.launch", "--nproc-per-node=4", "--nnodes=1",
                         "--standalone", "-m", "ftcore", "train", "cfg.yml", "lr=1e-4"]  # fmt: skip
    node = Launch(8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400)
    node.check()
    assert node.torchrun_arguments()[2:] == [
        "--node-rank=1",
        "--master-addr=10.0.0.1",
        "--master-port=29400",
    ]
    pinned = Launch(2, master_port=29600).torchrun_arguments()
    assert pinned[2:] == ["--node-rank=0", "--master-addr=127.0.0.1", "--master-port=29600"]
    with pytest.raises(FtcoreError, match="needs --master-addr"):
        Launch(8, nnodes=2).check()
    with pytest.raises(FtcoreError, match=r"--node-rank must be in 0\.\.1"):
        Launch(8, nnodes=2, node_rank=2, master_addr="h").check()
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(FtcoreError, match="already started by torchrun"):
        Launch(2).check()


def cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "ftcore", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)  # fmt: skip


RANK_RECORDER = """
import os
from pathlib import Path

from ftcore import hookimpl


class RankRecorder:
    @hookimpl
    def ftcore_post_model_load(self, cfg, model, tokenizer):
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / f"hook-rank-{os.environ.get('RANK', 'single')}").write_text("ran")
"""


def test_cluster_options_without_nproc_are_an_error(tmp_path, base_model):
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model)))
    result = cli("train", path, "--nnodes", 2)
    assert result.returncode == 2
    assert "--nnodes, --node-rank, --master-addr and --master-port need --nproc" in result.stderr


def test_two_gloo_processes_train_save_once_and_resume_on_one(tmp_path, base_model):
    (tmp_path / "rank_recorder.py").write_text(RANK_RECORDER)
    cfg = run_config(tmp_path, base_model, plugins=["rank_recorder:RankRecorder"])
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    result = cli("train", path, "--nproc", 2, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("train_loss:") == 1  # rank 0 reports
    out = Path(cfg["output_dir"])
    assert sorted(p.name for p in out.glob("hook-rank-*")) == ["hook-rank-0", "hook-rank-1"]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    # 4 updates of 2 processes x 2 rows: the epoch counts both processes' rows
    rows = len(data.addition_rows(2))
    assert state["global_step"] == 4 and state["epoch"] == pytest.approx(16 / rows, abs=1e-3)
    assert sorted(p.name for p in (out / "checkpoint-4").glob("rng_state_*")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]
    assert not (out / ".ftcore-final.tmp").exists()
    manifest = json.loads((out / "ftcore_run.json").read_text())
    assert manifest["metrics"]["train_loss"] > 0
    resumed = cli("train", path, "max_steps=6", "resume_from_checkpoint=auto", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-4" in resumed.stderr
    final = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert final["global_step"] == 6


def test_a_distributed_checkpoint_consolidates_into_a_normal_model(tmp_path, base_model):
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(base_model)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.5)
    checkpoint = tmp_path / "out" / "checkpoint-2"
    dcp.save(
        {"model": trained.state_dict()}, checkpoint_id=str(checkpoint / "pytorch_model_fsdp_0")
    )
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model)))
    result = cli("consolidate", path, checkpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    target = tmp_path / "out" / "checkpoint-2-consolidated"
    saved = load_file(str(target / "model.safetensors"))
    assert {name for name, _ in trained.named_parameters()} <= set(saved)
    for name, value in saved.items():
        torch.testing.assert_close(value, trained.state_dict()[name], msg=name)
    assert (target / "config.json").is_file() and (target / "tokenizer.json").is_file()


def test_a_checkpoint_without_some_trained_weights_is_refused(tmp_path, base_model):
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    state = AutoModelForCausalLM.from_pretrained(base_model).state_dict()
    state.pop("model.norm.weight")
    checkpoint = tmp_path / "out" / "checkpoint-2"
    dcp.save({"model": state}, checkpoint_id=str(checkpoint / "pytorch_model_fsdp_0"))
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model)))
    result = cli("consolidate", path, checkpoint)
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        "lacks 1 trained weights of the config's model (first: model.norm.weight)" in result.stderr
    )
    assert not (tmp_path / "out" / "checkpoint-2-consolidated").exists()


def test_consolidating_a_normal_checkpoint_is_a_clear_error(tmp_path, base_model):
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model)))
    result = cli("consolidate", path, base_model)
    assert result.returncode == 2
    assert "already holds full weights; nothing to consolidate" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("consolidate", path, tmp_path / "nope")
    assert result.stderr.strip() == f"checkpoint {tmp_path / 'nope'} does not exist"
    fsdp = tmp_path / "checkpoint-2" / "pytorch_model_fsdp_0"
    fsdp.mkdir(parents=True)
    (fsdp / "junk.distcp").write_bytes(b"not a shard")
    result = cli("consolidate", path, fsdp.parent)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pytorch_model_fsdp_0 has no .metadata file: it is not a whole FSDP" in result.stderr


def zero_checkpoint(root: Path, processes: int) -> Path:
    """The files DeepSpeed writes for a ZeRO checkpoint (empty: only their names are read)."""
    step = root / "checkpoint-4" / "global_step4"
    step.mkdir(parents=True)
    (step.parent / "latest").write_text("global_step4")
    for rank in range(processes):
        (step / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
    return step.parent


def fake_ds_to_universal(tmp_path: Path, monkeypatch, body: str) -> None:
    """DeepSpeed's conversion script stood in for (DeepSpeed does not install on CI's CPUs)."""
    module = tmp_path / "fake" / "deepspeed" / "checkpoint" / "ds_to_universal.py"
    module.parent.mkdir(parents=True)
    for package in (module.parent, module.parent.parent):
        (package / "__init__.py").write_text("")
    module.write_text(f"import sys\nfrom pathlib import Path\nargs = sys.argv[1:]\n{body}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))


def test_a_zero_checkpoint_of_another_world_size_loads_as_a_universal_checkpoint(tmp_path):
    from ftcore.training.universal import needs_universal, universal_loading, zero_world_size

    checkpoint = str(zero_checkpoint(tmp_path, 2))
    assert zero_world_size(checkpoint) == 2
    assert not needs_universal(checkpoint, 2) and needs_universal(checkpoint, 1)
    assert not needs_universal(str(tmp_path), 1)  # not a ZeRO checkpoint
    config = universal_loading({"zero_optimization": {"stage": 3}, "checkpoint": {"tag": "x"}})
    assert config["checkpoint"] == {"tag": "x", "load_universal": True}
    assert universal_loading("zero3")["checkpoint"] == {"load_universal": True}


def test_the_universal_checkpoint_is_published_only_once_complete(tmp_path, monkeypatch):
    from ftcore.training.universal import LATEST, write_universal

    checkpoint = zero_checkpoint(tmp_path, 2)
    (checkpoint / ".universal-staging" / "left-by-a-killed-run").mkdir(parents=True)
    converts = """
import os
assert "RANK" not in os.environ  # outside the run's process group
out = Path(args[args.index("--output_folder") + 1])
assert Path(args[args.index("--input_folder") + 1]).name == "global_step4"
(out / "zero").mkdir(parents=True)
(out.parent / "latest_universal").write_text(out.name)
"""
    fake_ds_to_universal(tmp_path, monkeypatch, converts + "raise SystemExit('ran out of disk')")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(FtcoreError, match="resume on the number of GPUs that wrote it") as error:
        write_universal(str(checkpoint))
    assert "ran out of disk" in str(error.value)  # the converter's own words
    assert sorted(p.name for p in checkpoint.iterdir()) == ["global_step4", "latest"]

    fake_ds_to_universal(tmp_path / "ok", monkeypatch, converts)
    write_universal(str(checkpoint))
    assert (checkpoint / LATEST).read_text() == "global_step4_universal"
    assert (checkpoint / "global_step4_universal" / "zero").is_dir()
    assert not (checkpoint / ".universal-staging").exists()
    fake_ds_to_universal(tmp_path / "again", monkeypatch, "raise SystemExit(1)")
    write_universal(str(checkpoint))  # converted once: later processes and runs reuse it


def test_other_ranks_wait_for_the_conversion_and_say_why_when_it_never_comes(tmp_path, monkeypatch):
    import threading

    from ftcore.training import universal

    checkpoint = zero_checkpoint(tmp_path, 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(universal, "POLL_S", 0.01)
    monkeypatch.setattr(universal, "write_universal", lambda _: pytest.fail("rank 1 converted"))

    def rank_0_publishes():
        (checkpoint / "global_step4_universal").mkdir()
        (checkpoint / universal.LATEST).write_text("global_step4_universal")

    threading.Timer(0.2, rank_0_publishes).start()
    universal.prepare_universal(str(checkpoint), 1)  # returns once rank 0 has published
    assert (checkpoint / universal.LATEST).is_file()

    monkeypatch.setattr(universal, "WAIT_S", 0)
    with pytest.raises(FtcoreError, match="storage that every node sees"):
        universal.wait_for_universal(str(zero_checkpoint(tmp_path / "other", 2)))


def test_a_lone_process_trains_on_one_gpu_instead_of_data_parallel(caplog):
    from ftcore.training.arguments import one_gpu_per_process

    class Arguments:  # what transformers reports on a host with 4 GPUs
        world_size, _n_gpu = 1, 4
        n_gpu = property(lambda self: self._n_gpu)

    args = one_gpu_per_process(Arguments())
    assert args.n_gpu == 1 and "ftcore train --nproc 4" in caplog.text
