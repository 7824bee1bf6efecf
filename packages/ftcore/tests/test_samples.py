"""Samples from a plugin reach the JSONL file, TensorBoard (read back from its event files) and
tracker plugins; a failing tracker never stops training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcore.config import load_config
from ftcore.errors import ConfigError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model
from ftcore.tracking import as_markdown

SAMPLER = """
from transformers import TrainerCallback

from ftcore import hookimpl
from ftcore.tracking import log_samples

TRAINER = []

class Every2(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % 2 == 0:
            log_samples(TRAINER[0], "previews", [
                {"prompt": "1+1=", "answer": f"step {state.global_step} | x"},
                {"prompt": "2+2=", "answer": "4"},
            ])

@hookimpl
def ftcore_post_trainer_create(cfg, trainer):
    TRAINER[:] = [trainer]

@hookimpl
def ftcore_callbacks(cfg, model):
    return [Every2()]
"""

RECEIVER = """
import json, os

from ftcore import hookimpl

@hookimpl
def ftcore_log_samples(cfg, trainer, name, rows):
    with open(os.environ["RECEIVED"], "a") as handle:
        handle.write(json.dumps([trainer.state.global_step, name, rows]) + "\\n")
"""

BROKEN = """
from ftcore import hookimpl

@hookimpl
def ftcore_log_samples(cfg, trainer, name, rows):
    raise ConnectionError("tracker server went away")
"""


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def run_config(tmp_path: Path, base_model: str, plugins: list[str], **keys) -> dict:
    return {
        "base_model": base_model,
        "plugins": plugins,
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(1))}],
        "sequence_len": 16,
        "micro_batch_size": 8,
        "max_steps": 4,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def tensorboard_texts(log_dir: Path) -> dict[int, str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = {p.parent for p in log_dir.rglob("events.out.tfevents.*")}
    accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        event.step: event.tensor_proto.string_val[0].decode()
        for event in accumulator.Tensors("previews/text_summary")
    }


def test_samples_reach_the_file_tensorboard_and_plugins(
    tmp_path, base_model, plugin_site, monkeypatch
):
    plugin_site.add(
        "unused", {}, {"testplugins.sampler": SAMPLER, "testplugins.receiver": RECEIVER}
    )
    monkeypatch.setenv("RECEIVED", str(tmp_path / "received.jsonl"))
    plugins = ["testplugins.sampler", "testplugins.receiver"]
    cfg = run_config(tmp_path, base_model, plugins, report_to=["tensorboard"])
    train(load_config(cfg))

    out = Path(cfg["output_dir"])
    lines = [
        json.loads(line) for line in (out / "samples" / "previews.jsonl").read_text().splitlines()
    ]
    assert lines == [
        {"step": 2, "prompt": "1+1=", "answer": "step 2 | x"},
        {"step": 2, "prompt": "2+2=", "answer": "4"},
        {"step": 4, "prompt": "1+1=", "answer": "step 4 | x"},
        {"step": 4, "prompt": "2+2=", "answer": "4"},
    ]
    received = [json.loads(line) for line in (tmp_path / "received.jsonl").read_text().splitlines()]
    assert [(step, name) for step, name, _ in received] == [(2, "previews"), (4, "previews")]
    assert received[1][2][0] == {"prompt": "1+1=", "answer": "step 4 | x"}

    texts = tensorboard_texts(out)
    assert sorted(texts) == [2, 4]
    assert "| prompt | answer |" in texts[4] and "step 4 \\| x" in texts[4]


def test_a_failing_tracker_is_logged_and_training_goes_on(
    tmp_path, base_model, plugin_site, caplog
):
    plugin_site.add("unused", {}, {"testplugins.sampler": SAMPLER, "testplugins.broken": BROKEN})
    cfg = run_config(tmp_path, base_model, ["testplugins.sampler", "testplugins.broken"])
    train(load_config(cfg))
    assert (Path(cfg["output_dir"]) / "model.safetensors").is_file()
    assert "could not log samples to plugins: tracker server went away" in caplog.text


def test_an_unknown_tracker_is_a_config_error_with_a_suggestion(tmp_path, base_model):
    with pytest.raises(
        ConfigError, match=r"report_to\[0\].*unknown tracker 'tensorbord'.*tensorboard"
    ):
        load_config(run_config(tmp_path, base_model, [], report_to=["tensorbord"]))


def test_markdown_tables_escape_pipes_and_newlines():
    table = as_markdown([{"a": "x|y", "b": "one\ntwo"}])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | one<br>two |"]


METRICS = """
from transformers import TrainerCallback

from ftcore import hookimpl

TRAINER = []

class Steps(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        TRAINER[0].ftcore_record_metric("plugin/step", float(state.global_step))

@hookimpl
def ftcore_post_trainer_create(cfg, trainer):
    TRAINER[:] = [trainer]

@hookimpl
def ftcore_callbacks(cfg, model):
    return [Steps()]
"""


def test_plugin_metrics_are_logged_with_the_loss_as_means(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.metrics": METRICS})
    cfg = run_config(tmp_path, base_model, ["testplugins.metrics"], logging_steps=2)
    train(load_config(cfg))
    state = json.loads(
        next(Path(cfg["output_dir"]).glob("checkpoint-*/trainer_state.json")).read_text()
    )
    logged = [(e["step"], e["plugin/step"]) for e in state["log_history"] if "loss" in e]
    assert logged == [(1, 0.0), (2, 1.0), (4, 2.5)]  # the first step is logged alone, then pairs
