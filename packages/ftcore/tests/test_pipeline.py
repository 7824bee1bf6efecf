"""``ftcore train`` end to end on a tiny model: hooks, resume, accumulation, packing, adapters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftcore.config import load_config
from ftcore.errors import FtcoreError
from ftcore.host import HOOK_NAMES
from ftcore.pipeline import train
from ftcore.testing import save_tiny_model
from ftcore.training import checkpoints

CONFIG_HOOKS = [
    "ftcore_config_schema",
    "ftcore_dataset_strategies",
    "ftcore_validate_config",
    "ftcore_model_claims",
    "ftcore_configure",
]
RUN_HOOKS = [
    "ftcore_load_datasets",
    "ftcore_pre_model_load",
    "ftcore_post_model_build",
    "ftcore_pre_adapter_load",
    "ftcore_post_adapter_load",
    "ftcore_post_model_load",
    "ftcore_data_collator",
    "ftcore_training_args",
    "ftcore_trainer_class",
    "ftcore_callbacks",
    "ftcore_post_trainer_create",
    "ftcore_create_optimizer",
    "ftcore_create_lr_scheduler",
    "ftcore_compute_loss",
    "ftcore_save_model",
    "ftcore_post_train",
    "ftcore_post_train_unload",
]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def write_data(path: Path, count: int = 24) -> str:
    # Rows of different lengths, so that loss normalisation across micro-batches matters.
    rows = [
        {"text": f"{a}+{b}={a + b}" + "." * ((a * 4 + b) % 5)} for a in range(6) for b in range(4)
    ]
    rows = rows[:count]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return {
        "base_model": base_model,
        "datasets": [{"path": write_data(tmp_path / "data.jsonl"), "type": "completion"}],
        "sequence_len": 16,
        "micro_batch_size": 4,
        "max_steps": 3,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def weights(output_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(output_dir) / "model.safetensors"))


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


ALL_HOOKS_PLUGIN = """
from ftcore import hookimpl

@hookimpl
def ftcore_compute_loss(cfg, model, inputs, trainer):
    return None
"""


def test_every_hook_runs_once_in_the_documented_order(
    tmp_path, base_model, plugin_site, hook_recorder
):
    plugin_site.add("unused", {}, {"testplugins.all_hooks": ALL_HOOKS_PLUGIN})
    cfg = run_config(
        tmp_path,
        base_model,
        plugins=["testplugins.all_hooks"],
        adapter="lora",
        val_set_size=0.25,
        max_steps=2,
    )
    metrics = train(load_config(cfg))
    first_calls = list(dict.fromkeys(hook_recorder.names))
    assert first_calls == CONFIG_HOOKS + RUN_HOOKS
    for once in (
        "ftcore_configure",
        "ftcore_post_train",
        "ftcore_post_train_unload",
        "ftcore_save_model",
    ):
        assert len(hook_recorder.calls_of(once)) == 1, once
    assert len(hook_recorder.calls_of("ftcore_compute_loss")) >= 2  # every step, eval too
    not_in_sft = {
        "ftcore_cli_commands",
        "ftcore_reward_functions",
        "ftcore_on_rollouts",
        "ftcore_inference_handler",
        "ftcore_on_train_error",
        "ftcore_log_samples",  # only when a plugin has samples
    }
    assert set(HOOK_NAMES) - set(first_calls) == not_in_sft
    assert metrics["eval_loss"] > 0


def test_loss_falls_and_the_output_is_complete(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, max_steps=12, hf_token="hf_do_not_leak")
    metrics = train(load_config(cfg))
    out = Path(cfg["output_dir"])
    for name in ("model.safetensors", "config.json", "tokenizer.json", "ftcore_run.json"):
        assert (out / name).is_file(), name
    assert not (out / ".ftcore-final.tmp").exists()
    manifest = json.loads((out / "ftcore_run.json").read_text())
    assert manifest["versions"]["torch"] and manifest["versions"]["transformers"]
    assert manifest["config"]["hf_token"] == "***"
    assert "hf_do_not_leak" not in (out / "ftcore_run.json").read_text()
    assert manifest["data"]["fingerprint"] and manifest["data"]["train_rows"] == 24
    log = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert losses[-1] < losses[0] * 0.7, losses
    assert metrics["train_loss"] > 0


def test_interrupted_then_resumed_run_ends_with_the_same_weights(
    tmp_path, base_model, plugin_site, monkeypatch
):
    keys = {
        "max_steps": 6,
        "save_steps": 3,
        "plugins": ["ftcore.testing.plugins.stop_at_step"],
        "optimizer": "adamw_torch",
    }
    straight = run_config(tmp_path / "a", base_model, **keys)
    train(load_config(straight))

    interrupted = run_config(tmp_path / "b", base_model, **keys)
    monkeypatch.setenv("STOP_AT_STEP", "3")
    train(load_config(interrupted))
    out = Path(interrupted["output_dir"])
    assert [step for step, _ in checkpoints.checkpoints(out)] == [3]
    monkeypatch.delenv("STOP_AT_STEP")
    train(load_config({**interrupted, "resume_from_checkpoint": "auto"}))
    assert [step for step, _ in checkpoints.checkpoints(out)] == [3, 6]
    assert_same_weights(weights(straight["output_dir"]), weights(out))


PLUGIN_LOSS = """
from ftcore import hookimpl

@hookimpl
def ftcore_compute_loss(cfg, model, inputs, trainer):
    return model(**inputs).loss  # the mean over this micro-batch's label tokens
"""


@pytest.mark.parametrize("plugin_loss", [False, True])
def test_gradient_accumulation_matches_the_larger_batch(
    tmp_path, base_model, plugin_site, plugin_loss
):
    plugins = []
    if plugin_loss:
        plugin_site.add("unused", {}, {"testplugins.loss": PLUGIN_LOSS})
        plugins = ["testplugins.loss"]
    results = []
    for name, keys in {
        "big": {"micro_batch_size": 8},
        "accumulated": {"micro_batch_size": 2, "gradient_accumulation_steps": 4},
    }.items():
        cfg = run_config(
            tmp_path / name,
            base_model,
            max_steps=2,
            optimizer="sgd",
            learning_rate=0.5,
            lr_scheduler="constant",
            plugins=plugins,
            **keys,
        )
        train(load_config(cfg))
        results.append(weights(cfg["output_dir"]))
    if plugin_loss:  # a plugin's micro-batch mean: exact for equal-sized micro-batches only
        assert_same_weights(*results, atol=5e-3)
    else:  # token-exact normalisation across micro-batches of different lengths
        assert_same_weights(*results, atol=1e-5)


def test_packed_training_step_equals_unpacked(tmp_path, base_model):
    results = []
    for name, packing in (("plain", False), ("packed", True)):
        cfg = run_config(
            tmp_path / name, base_model, sample_packing=packing, sequence_len=64, micro_batch_size=24,
            max_steps=1, optimizer="sgd", learning_rate=0.5, lr_scheduler="constant", max_grad_norm=0,
        )  # fmt: skip
        train(load_config(cfg))
        results.append(weights(cfg["output_dir"]))
    assert_same_weights(*results, atol=1e-5)


def test_lora_saves_an_adapter_that_merges_into_the_same_model(tmp_path, base_model):
    from ftcore.inference import load_trained, merge_adapter

    cfg = load_config(run_config(tmp_path, base_model, adapter="lora", lora_r=4, max_steps=4)).cfg
    train(load_config(run_config(tmp_path, base_model, adapter="lora", lora_r=4, max_steps=4)))
    out = Path(cfg.output_dir)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    peft_model, tokenizer = load_trained(cfg)
    merged_dir = merge_adapter(cfg)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    ids = torch.tensor([tokenizer("3+2=5").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(
            merged(ids).logits, peft_model(input_ids=ids).logits, atol=1e-5, rtol=1e-5
        )
    # an --output that holds the run's own inputs is refused, and they stay as they were
    before = sorted(p.name for p in out.iterdir())
    for target, what in [
        (out, "output_dir (the trained adapter)"),
        (Path(base_model), "base_model"),
        (tmp_path, "a folder that holds output_dir (the trained adapter)"),
        (out / "checkpoint-4", "a checkpoint"),
    ]:
        with pytest.raises(FtcoreError, match=rf"--output {target} is {re.escape(what)}, which"):
            merge_adapter(cfg, str(target))
    assert sorted(p.name for p in out.iterdir()) == before


def test_resuming_with_other_trained_parameters_says_so(tmp_path, base_model):
    first = run_config(tmp_path, base_model, max_steps=1, save_steps=1,
                       unfrozen_parameters=[r"lm_head\."])  # fmt: skip
    train(load_config(first))
    resumed = {**first, "max_steps": 2, "resume_from_checkpoint": "auto",
               "unfrozen_parameters": [r"lm_head\.", r"embed_tokens\."]}  # fmt: skip
    # torch's ValueError about parameter groups, without this, names no setting
    with pytest.raises(FtcoreError, match="was trained with another set of trained parameters"):
        train(load_config(resumed))


def test_unfrozen_parameters_train_only_what_matches(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, max_steps=2, unfrozen_parameters=[r"lm_head\."])
    train(load_config(cfg))
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(base_model).state_dict()
    after = weights(cfg["output_dir"])
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed == {"lm_head.weight"}


def test_a_checkpoint_that_cannot_be_written_is_one_error_and_removed(
    tmp_path, base_model, monkeypatch
):
    real_save = torch.save
    cfg = run_config(tmp_path, base_model, max_steps=4, save_steps=2, optimizer="adamw_torch")

    def full_disk(obj, f, *args, **kwargs):  # what torch's zip writer raises on a full disk
        if "optimizer" in str(f):
            Path(f).write_bytes(b"PK\x03\x04 half an archive")
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 118 vs 104"
            )
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(FtcoreError, match=r"could not write checkpoint-2 to .* GiB free there"):
        train(load_config(cfg))
    assert not (Path(cfg["output_dir"]) / "checkpoint-2").exists()


def test_ctrl_c_during_a_checkpoint_save_leaves_no_partial_folder(
    tmp_path, base_model, monkeypatch
):
    real_save = torch.save
    cfg = run_config(tmp_path, base_model, max_steps=4, save_steps=2, optimizer="adamw_torch")

    def interrupted(obj, f, *args, **kwargs):
        if "optimizer" in str(f):
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(cfg))
    assert not (Path(cfg["output_dir"]) / "checkpoint-2").exists()


def test_ctrl_c_during_the_final_save_leaves_no_hidden_half_saved_model(
    tmp_path, base_model, monkeypatch
):
    from transformers import Trainer

    real_save = Trainer.save_model

    def interrupted(self, output_dir=None, _internal_call=False):
        real_save(self, output_dir, _internal_call)
        if not _internal_call:  # the final save, not a checkpoint's: written, not yet published
            assert any(Path(output_dir).glob("*.safetensors"))
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_model", interrupted)
    cfg = run_config(tmp_path, base_model, max_steps=1)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(cfg))
    out = Path(cfg["output_dir"])
    assert not (out / ".ftcore-final.tmp").exists()
    assert not list(out.glob("*.safetensors"))


@pytest.mark.parametrize(
    ("length", "last"), [({"max_steps": 2}, 2), ({"max_steps": None, "num_epochs": 1}, 6)]
)
def test_resuming_a_finished_run_keeps_its_model_and_record(
    tmp_path, base_model, caplog, length, last
):
    """transformers trains one more step when it resumes a max_steps run that reached them."""
    import logging

    cfg = run_config(tmp_path, base_model, save_steps=1, **length)
    first = train(load_config(cfg))
    out = Path(cfg["output_dir"])
    record = (out / "ftcore_run.json").read_text()
    saved = weights(out)
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        again = train(load_config({**cfg, "resume_from_checkpoint": "auto"}))
    assert again == json.loads(record)["metrics"] and again["train_loss"] == first["train_loss"]
    assert (out / "ftcore_run.json").read_text() == record  # not replaced by a 0-step run's
    assert_same_weights(weights(out), saved, atol=0)
    assert f"{out / f'checkpoint-{last}'} is the run's last step: nothing was left" in caplog.text
    assert checkpoints.newest_complete(out) == out / f"checkpoint-{last}"


def test_an_earlier_record_does_not_make_an_unsaved_run_look_finished(
    tmp_path, base_model, monkeypatch
):
    import ftcore.pipeline

    cfg = run_config(tmp_path, base_model, max_steps=2, save_steps=1)
    train(load_config(cfg))  # finished, recorded at step 2
    longer = {**cfg, "max_steps": 4, "resume_from_checkpoint": "auto"}

    def full_disk(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(ftcore.pipeline, "_save_final", full_disk)
    with pytest.raises(OSError):  # steps 3 and 4 are in checkpoint-4, not saved as the model
        train(load_config(longer))
    monkeypatch.undo()
    train(load_config(longer))
    record = json.loads((Path(cfg["output_dir"]) / "ftcore_run.json").read_text())
    assert record["global_step"] >= 4 and record["config"]["max_steps"] == 4


def test_a_new_run_beside_an_earlier_runs_checkpoints_is_refused(tmp_path, base_model):
    """Rotation would keep the earlier run's higher steps, and ``auto`` would resume it."""
    first = run_config(tmp_path, base_model, max_steps=4, save_steps=2, save_total_limit=2)
    train(load_config(first))
    out = Path(first["output_dir"])
    kept = sorted(p.name for p in out.glob("checkpoint-*"))
    assert kept == ["checkpoint-2", "checkpoint-4"]
    again = {**first, "max_steps": 1, "save_steps": 1, "learning_rate": 1e-3}
    with pytest.raises(FtcoreError, match=r"holds checkpoints of an earlier run \(checkpoint-2, "
                       r"checkpoint-4\); continue that run with resume_from_checkpoint: auto"):  # fmt: skip
        train(load_config(again))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == kept
    train(load_config({**again, "overwrite_output_dir": True}))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    checkpoints.unmark(out / "checkpoint-1")  # a save of the same step starts by unmarking it
    assert checkpoints.resolve_resume("auto", out) is None


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
        if complete:
            checkpoints.mark_complete(folder, step)
    assert checkpoints.resolve_resume("auto", tmp_path) == str(tmp_path / "checkpoint-4")
    with pytest.raises(FtcoreError, match="checkpoint-6 is incomplete"):
        checkpoints.resolve_resume(str(tmp_path / "checkpoint-6"), tmp_path)
    assert checkpoints.resolve_resume("auto", tmp_path / "empty") is None
    (tmp_path / "data").mkdir()
    with pytest.raises(FtcoreError, match="data is not a checkpoint folder"):
        checkpoints.resolve_resume(str(tmp_path / "data"), tmp_path)
    checkpoints.rotate(tmp_path, keep=1)
    assert [s for s, _ in checkpoints.checkpoints(tmp_path)] == [4, 6]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_qlora_on_cpu_is_a_clear_error(tmp_path, base_model):
    loaded = load_config(run_config(tmp_path, base_model, adapter="qlora", load_in_4bit=True))
    with pytest.raises(
        FtcoreError, match="needs a CUDA GPU and bitsandbytes; on this machine use adapter: lora"
    ):
        train(loaded)


def cli(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ftcore", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_cli_reports_bad_data_without_a_traceback_or_output(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model)
    cfg["datasets"] = [{"path": str(tmp_path / "missing.jsonl")}]
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(cfg))
    result = cli("train", path)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"dataset file not found: {tmp_path / 'missing.jsonl'}"
    )
    assert "Traceback" not in result.stderr
    assert not Path(cfg["output_dir"]).exists()


@pytest.mark.parametrize("launch", [[], ["--nproc", "2"]], ids=["one-process", "nproc-2"])
def test_ctrl_c_in_cli_training_names_the_checkpoint_to_continue_from(tmp_path, base_model, launch):
    import os
    import signal
    import time

    cfg = run_config(tmp_path, base_model, max_steps=100_000, save_steps=1, save_total_limit=2)
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "other-out"  # an override the continuing command must keep
    command = ["ftcore", "train", str(path), f"output_dir={out}", *launch]
    with (tmp_path / "stderr.txt").open("w") as stderr:
        # its own process group, which gets the SIGINT, as a terminal's Ctrl-C would send it
        process = subprocess.Popen([sys.executable, "-m", *command], stderr=stderr,
                                   stdout=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while checkpoints.newest_complete(out) is None:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    text = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 130
    newest = checkpoints.newest_complete(out)
    again = " ".join([*command[:3], f"output_dir={out}", *launch, "resume_from_checkpoint=auto"])
    assert text.strip().splitlines()[-1] == (
        f"interrupted (Ctrl-C): the newest complete checkpoint is {newest}; continue with: {again}"
    )
    assert text.count("interrupted (Ctrl-C)") == 1
    assert "Traceback" not in text


def test_cli_preprocess_then_train_reuses_the_cache(tmp_path, base_model):
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model, max_steps=1)))
    first = cli("preprocess", path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("tokenized: 24 train rows in ")
    second = cli("preprocess", path)
    assert second.stdout.startswith("already cached: 24 train rows in ")
    trained = cli("train", path)
    assert trained.returncode == 0, trained.stderr
    assert "loaded tokenized datasets from cache" in trained.stderr
    assert "Tokenizing" not in trained.stderr


COUNTING_PLUGIN = """
import os
from ftcore import hookimpl
from ftcore.data.strategies import BUILTIN_STRATEGIES

class Counted:
    def tokenize(self, row, tokenizer, ds, cfg):
        with open(os.environ["COUNT_FILE"], "a") as handle:
            handle.write(os.environ.get("RANK", "0") + "\\n")
        return BUILTIN_STRATEGIES["completion"].tokenize(row, tokenizer, ds, cfg)

@hookimpl
def ftcore_dataset_strategies():
    return {"counted": Counted()}
"""


@pytest.mark.slow
def test_two_processes_train_with_one_tokenization(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.counting": COUNTING_PLUGIN})
    cfg = run_config(tmp_path, base_model, plugins=["testplugins.counting"], max_steps=4)
    cfg["datasets"][0]["type"] = "counted"
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(cfg))
    env = {**plugin_site.env(), "COUNT_FILE": str(tmp_path / "count.txt")}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ftcore", "train", str(path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "count.txt").read_text().split() == ["0"] * 24  # rank 0 tokenized, once
    assert result.stdout.count("train_loss:") == 1  # rank 0 reports
    assert result.stderr.count("ftcore: saved the model") == 1
    state = json.loads(
        (Path(cfg["output_dir"]) / "checkpoint-4" / "trainer_state.json").read_text()
    )
    assert state["global_step"] == 4
    manifest = json.loads((Path(cfg["output_dir"]) / "ftcore_run.json").read_text())
    assert manifest["plugins"][0]["name"] == "testplugins.counting"


HANDLER_PLUGIN = """
from ftcore import hookimpl

@hookimpl
def ftcore_inference_handler(cfg, model, tokenizer):
    return lambda prompt: "handled " + prompt + " with " + type(model).__name__
"""


def test_inference_hook_replaces_the_decoding_loop(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.handler": HANDLER_PLUGIN})
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model, plugins=["testplugins.handler"])))
    result = cli("inference", path, "--base", "--prompt", "hi", env=plugin_site.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "handled hi with LlamaForCausalLM"


def test_chat_inference_applies_the_template(tmp_path, base_model):
    from ftcore.inference import make_generator

    loaded = load_config(run_config(tmp_path, base_model))
    seen, budgets = [], []

    class Recorder:
        device = "cpu"

        def generate(self, input_ids, **kwargs):
            seen.append(input_ids)
            budgets.append(kwargs["max_new_tokens"])
            return torch.cat([input_ids, torch.tensor([[40]])], dim=1)

    from ftcore.testing import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()
    assert make_generator(loaded, Recorder(), tokenizer, chat=True)("hi") == tokenizer.decode([40])
    assert tokenizer.decode(seen[0][0]) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    make_generator(loaded, Recorder(), tokenizer, chat=False)("hi")
    assert tokenizer.decode(seen[1][0]) == "<s>hi"
    Recorder.config = type("Config", (), {"max_position_embeddings": 70})
    with pytest.raises(FtcoreError, match=r"the prompt is \d+ tokens: the model has 70 positions"):
        make_generator(loaded, Recorder(), tokenizer, chat=False)("1+2+" * 50)
    assert len(seen) == 2  # past the model's positions it writes noise: nothing generated
    make_generator(loaded, Recorder(), tokenizer, chat=False)("hi")  # 2 tokens of 70
    assert budgets[-1] == 64
    Recorder.config.max_position_embeddings = 40
    make_generator(loaded, Recorder(), tokenizer, chat=False)("hi")
    assert budgets[-1] == 40 - seen[-1].shape[1]  # up to the last position, not past it
    Recorder.config.rope_scaling = {"rope_type": "yarn", "factor": 4.0}  # stretched: no limit
    make_generator(loaded, Recorder(), tokenizer, chat=False)("1+2+" * 50)
    assert budgets[-1] == 64


def test_damaged_or_mismatched_saves_are_one_clear_error(tmp_path, base_model):
    from ftcore.inference import load_trained, merge_adapter

    keys = {"adapter": "lora", "lora_r": 4, "max_steps": 1}
    train(load_config(run_config(tmp_path, base_model, **keys)))
    cfg = load_config(run_config(tmp_path, base_model, **keys)).cfg
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(FtcoreError, match="afile is a file; --output takes a folder"):
        merge_adapter(cfg, str(afile))
    wider = save_tiny_model(str(tmp_path / "wider"), "llama", seed=0, hidden_size=96)
    with pytest.raises(FtcoreError, match=r"does not fit base_model .*wider \(size mismatch"):
        load_trained(cfg.model_copy(update={"base_model": wider}))
    merged = merge_adapter(cfg)
    assert sorted(p.name for p in merged.iterdir() if p.name.startswith(".")) == []
    weights_file = merged / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(FtcoreError, match=r"cannot load the model saved in .*merged .*incomplete"):
        load_trained(cfg.model_copy(update={"adapter": None, "output_dir": str(merged)}))


def test_inference_before_training_says_what_to_do(tmp_path, base_model):
    path = tmp_path / "run.yml"
    path.write_text(json.dumps(run_config(tmp_path, base_model)))
    result = cli("inference", path, "--prompt", "hi")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("run ftcore train first (or pass --base)")
    result = cli("inference", path, "--prompt", "hi", "--max-new-tokens", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'--max-new-tokens': 0 is not in the range x>=1" in result.stderr


def test_added_tokens_resize_the_embeddings_and_checkpointing_trains(tmp_path, base_model):
    new_tokens = [f"<extra_{i}>" for i in range(30)]  # 103 + 30 > the model's 128 rows
    cfg = run_config(
        tmp_path, base_model, tokens=new_tokens, special_tokens={"pad_token": "<pad>"},
        gradient_checkpointing=True, max_steps=2,
    )  # fmt: skip
    train(load_config(cfg))
    saved = weights(cfg["output_dir"])
    assert saved["model.embed_tokens.weight"].shape[0] == 133
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg["output_dir"])
    assert tokenizer.convert_tokens_to_ids("<extra_29>") == 132


def test_lora_on_moe_experts_attaches_without_peft_s_false_pattern_warning(tmp_path, base_model):
    import warnings

    from ftcore.modeling import attach_adapter
    from ftcore.testing import build_tiny_model

    experts = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    cfg = load_config(run_config(tmp_path, base_model, adapter="lora", lora_r=4, lora_alpha=8,
                                 lora_target_linear=True, lora_target_parameters=experts)).cfg  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = attach_adapter(cfg, build_tiny_model("qwen3_moe"))
    assert not [w for w in caught if "_pattern keys" in str(w.message)]
    # the pattern was applied: peft gives the fused gate/up projection twice the rank
    parameters = dict(model.named_parameters())
    experts = "base_model.model.model.layers.0.mlp.experts"
    rows = model.config.num_experts  # lora_A of all experts stacked: experts x rank rows
    assert parameters[f"{experts}.base_layer.lora_A.default.weight"].shape[0] == rows * 8  # gate_up
    assert parameters[f"{experts}.lora_A.default.weight"].shape[0] == rows * 4  # down


def test_lora_on_a_random_init_model_reloads_the_same_base(tmp_path, base_model):
    from ftcore.inference import load_trained

    cfg = run_config(tmp_path, base_model, model_init="random", adapter="lora", max_steps=2)
    train(load_config(cfg))
    ids = torch.tensor([[1, 10, 11, 12]])
    first, _ = load_trained(load_config(cfg).cfg)
    second, _ = load_trained(load_config(cfg).cfg)
    with torch.no_grad():
        torch.testing.assert_close(first(input_ids=ids).logits, second(input_ids=ids).logits)


def test_a_new_run_in_the_same_folder_leaves_no_stale_weights(tmp_path, base_model):
    from ftcore.inference import merge_adapter

    cfg = run_config(tmp_path, base_model, adapter="lora", max_steps=1)
    train(load_config(cfg))
    out = Path(cfg["output_dir"])
    assert (out / "adapter_config.json").is_file()
    full = {**cfg, "adapter": None, "overwrite_output_dir": True}
    train(load_config(full))
    assert (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    assert not (out / "adapter_model.safetensors").exists()
    with pytest.raises(FtcoreError, match="holds no LoRA adapter"):
        merge_adapter(load_config({**full, "adapter": "lora"}).cfg)


FAILING = """
import os
from ftcore import hookimpl

@hookimpl
def ftcore_post_trainer_create(cfg, trainer):
    os.makedirs(os.path.join(cfg.output_dir, "trackerlog", "run-1"))  # as a tracker would
    raise RuntimeError("plugin broke the run")

@hookimpl
def ftcore_on_train_error(cfg, error):
    with open(os.environ["ERROR_LOG"], "w") as handle:
        handle.write(type(error).__name__ + ": " + str(error))
    raise ValueError("and the error hook broke too")
"""


def test_a_failed_run_calls_the_error_hook_and_keeps_the_error(
    tmp_path, base_model, plugin_site, monkeypatch
):
    plugin_site.add("unused", {}, {"testplugins.failing": FAILING})
    monkeypatch.setenv("ERROR_LOG", str(tmp_path / "error.txt"))
    cfg = run_config(tmp_path, base_model, plugins=["testplugins.failing"])
    with pytest.raises(RuntimeError, match="plugin broke the run"):
        train(load_config(cfg))
    assert (tmp_path / "error.txt").read_text() == "RuntimeError: plugin broke the run"
    assert not Path(cfg["output_dir"]).exists()  # the run made it, and put no file in it


def test_a_failed_run_keeps_an_output_dir_that_was_there_before(
    tmp_path, base_model, plugin_site, monkeypatch
):
    plugin_site.add("unused", {}, {"testplugins.failing": FAILING})
    monkeypatch.setenv("ERROR_LOG", str(tmp_path / "error.txt"))
    cfg = run_config(tmp_path, base_model, plugins=["testplugins.failing"])
    (Path(cfg["output_dir"]) / "empty").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="plugin broke the run"):
        train(load_config(cfg))
    assert (Path(cfg["output_dir"]) / "empty").is_dir()


EVAL_LOSS = """
from ftcore import hookimpl

@hookimpl
def ftcore_compute_loss(cfg, model, inputs, trainer):
    return model(**inputs).loss * 2
"""


NAN_LOSS = """
from ftcore import hookimpl

@hookimpl
def ftcore_compute_loss(cfg, model, inputs, trainer):
    loss = model(**inputs).loss
    return loss * float("nan") if trainer.state.global_step >= 2 else loss
"""


def test_a_run_whose_loss_turns_nan_stops_and_saves_no_model(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.nan_loss": NAN_LOSS})
    cfg = run_config(tmp_path, base_model, plugins=["testplugins.nan_loss"], max_steps=6,
                     logging_steps=2, save_steps=1)  # fmt: skip
    # transformers logs the mean of the earlier losses in place of a NaN one: the norm shows it
    with pytest.raises(FtcoreError, match=r"training diverged at step 4: grad_norm is nan, so the"):
        train(load_config(cfg))
    out = Path(cfg["output_dir"])
    assert not list(out.glob("*.safetensors"))
    # step 3 went NaN and was saved; the last finite log was at step 2: auto resumes from there
    assert (out / "checkpoint-3").is_dir() and checkpoints.newest_complete(
        out
    ) == out / "checkpoint-2"


def test_a_plugin_loss_is_used_in_evaluation_too(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.evalloss": EVAL_LOSS})
    plain = train(
        load_config(run_config(tmp_path / "a", base_model, val_set_size=0.25, max_steps=1))
    )
    doubled = train(
        load_config(
            run_config(
                tmp_path / "b",
                base_model,
                val_set_size=0.25,
                max_steps=1,
                plugins=["testplugins.evalloss"],
            )
        )
    )
    assert doubled["eval_loss"] == pytest.approx(2 * plain["eval_loss"], rel=1e-3)
