"""The real lm-evaluation-harness on a tiny model that learned addition, post-train and standalone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model
from ftcore_lm_eval.evaluate import run_evaluation
from ftcore_lm_eval.tasks import group_by_fewshot, prepare_include_path

TASKS = Path(__file__).parent / "tasks"


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    return save_tiny_model(
        str(folder), "llama", hidden_size=128, intermediate_size=256, head_dim=32
    )


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    return {
        "base_model": base_model,
        "model_init": "random",
        "plugins": ["lm-eval"],
        "datasets": [{"path": data.write_jsonl(tmp_path / "add.jsonl", data.addition_rows(20))}],
        "sequence_len": 16,
        "micro_batch_size": 32,
        "num_epochs": 12,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.05,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        "lm_eval_tasks": ["toy_add_mc", "toy_add_gen:0"],
        "lm_eval_include_path": str(TASKS),
        "lm_eval_batch_size": 16,
        **keys,
    }


def results(output_dir: str) -> dict:
    files = sorted(Path(output_dir, "lm_eval_results").glob("*/results.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_tasks_group_by_shots():
    assert group_by_fewshot(["a", "b:5", "c", "d:5"], None) == {None: ["a", "c"], 5: ["b", "d"]}


def test_relative_data_paths_become_absolute(tmp_path):
    copy = prepare_include_path(TASKS)
    rewritten = (copy / "add_mc.yaml").read_text()
    assert str((TASKS / "data" / "add_mc.jsonl").resolve()) in rewritten


def broken_task_folder(tmp_path: Path, change: tuple[str, str]) -> Path:
    """A copy of the test tasks with one line of add_mc.yaml changed."""
    import shutil

    folder = tmp_path / "broken-tasks"
    shutil.copytree(TASKS, folder)
    text = (folder / "add_mc.yaml").read_text()
    assert change[0] in text
    (folder / "add_mc.yaml").write_text(text.replace(*change))
    return folder


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('"{{question}}"', '"{{nosuchfield}}"'), "UndefinedError: 'nosuchfield' is undefined"),
        (('"{{question}}"', "!function utils.doc_to_text"), "ImportError"),
    ],
)
def test_a_broken_task_is_one_message_that_names_its_folder(tmp_path, base_model, change, problem):
    folder = broken_task_folder(tmp_path, change)
    cfg = run_config(tmp_path, base_model, lm_eval_tasks=["toy_add_mc"], lm_eval_limit=2,
                     lm_eval_include_path=str(folder))  # fmt: skip
    with pytest.raises(FtcoreError) as info:
        run_evaluation(load_config(cfg).cfg)
    message = str(info.value)
    assert message.startswith("lm-eval could not evaluate toy_add_mc: ") and problem in message
    assert message.endswith(f"check these tasks' YAML in {folder}")
    assert "ftcore-lm-eval-tasks-" not in message  # not ftcore's temporary copy


def test_after_training_a_failed_evaluation_says_the_model_is_saved(tmp_path, base_model):
    folder = broken_task_folder(tmp_path, ('"{{question}}"', '"{{nosuchfield}}"'))
    cfg = run_config(tmp_path, base_model, num_epochs=1, lm_eval_tasks=["toy_add_mc"],
                     lm_eval_limit=2, lm_eval_include_path=str(folder))  # fmt: skip
    with pytest.raises(FtcoreError, match="Training finished and the model is saved in"):
        train(load_config(cfg))
    assert (Path(cfg["output_dir"]) / "model.safetensors").is_file()


def test_bad_devices_and_a_missing_model_folder_are_clear_errors(tmp_path, base_model):
    import torch

    with pytest.raises(ConfigError, match="lm_eval_device: expected cpu, cuda, cuda:N, mps"):
        load_config(run_config(tmp_path, base_model, lm_eval_device="gpu7"))
    with pytest.raises(ConfigError, match="lm_eval_limit: expected a number of documents"):
        load_config(run_config(tmp_path, base_model, lm_eval_limit=1.5))  # lm-eval reads it as 1
    with pytest.raises(ConfigError, match="lm_eval_limit: must be a finite number"):
        load_config(run_config(tmp_path, base_model, lm_eval_limit=float("inf")))
    cfg = run_config(tmp_path, base_model, lm_eval_model=str(tmp_path / "no-model"))
    with pytest.raises(FtcoreError, match="lm_eval_model: no model folder at"):
        run_evaluation(load_config(cfg).cfg)
    cfg = run_config(tmp_path, base_model, lm_eval_model="models/student/v2")  # no hub id
    with pytest.raises(FtcoreError, match="lm_eval_model: no model folder at models/student/v2"):
        run_evaluation(load_config(cfg).cfg)
    if not torch.cuda.is_available():
        cfg = run_config(tmp_path, base_model, lm_eval_device="cuda")
        with pytest.raises(FtcoreError, match="lm_eval_device: cuda, but no CUDA GPU is visible"):
            run_evaluation(load_config(cfg).cfg)


def test_no_tasks_warns_that_nothing_is_evaluated(tmp_path, base_model, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="ftcore"):
        load_config(run_config(tmp_path, base_model, lm_eval_tasks=[]))
    assert any("lm_eval_tasks is empty, so nothing is evaluated" in m for m in caplog.messages)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_model):
    tmp_path = tmp_path_factory.mktemp("run")
    cfg = run_config(tmp_path, base_model)
    train(load_config(cfg))
    return cfg


def test_post_train_evaluation_scores_what_the_model_learned(trained):
    found = results(trained["output_dir"])
    assert found["model"].startswith("trained model in ")
    assert found["summary"]["toy_add_mc"]["acc,none"] >= 0.75  # chance is 0.25
    assert found["summary"]["toy_add_gen"]["exact_match,none"] >= 0.5  # an untrained model: 0
    mc_run = next(run for run in found["runs"] if "toy_add_mc" in run["tasks"])
    assert mc_run["n-samples"]["toy_add_mc"]["effective"] == 40


def test_standalone_cli_evaluates_the_trained_model(trained, tmp_path):
    config = tmp_path / "run.yml"
    config.write_text(json.dumps({**trained, "lm_eval_tasks": ["toy_add_mc"], "lm_eval_limit": 8}))
    before = set(Path(trained["output_dir"], "lm_eval_results").iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "ftcore", "lm-eval", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| toy_add_mc" in result.stdout and "acc,none" in result.stdout
    new = set(Path(trained["output_dir"], "lm_eval_results").iterdir()) - before
    written = json.loads((new.pop() / "results.json").read_text())
    assert written["summary"]["toy_add_mc"]["acc,none"] >= 0.6
    assert written["runs"][0]["n-samples"]["toy_add_mc"]["effective"] == 8


def test_a_lora_adapter_is_evaluated_merged(tmp_path, base_model):
    cfg = run_config(
        tmp_path,
        base_model,
        adapter="lora",
        lora_r=8,
        num_epochs=1,
        lm_eval_tasks=["toy_add_mc"],
        lm_eval_limit=8,
    )
    train(load_config(cfg))
    assert results(cfg["output_dir"])["model"].endswith("(LoRA adapter merged)")


def test_an_unknown_task_is_a_clear_error(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, lm_eval_tasks=["toy_add_mcq"])
    with pytest.raises(FtcoreError) as info:
        run_evaluation(load_config(cfg).cfg)
    assert str(info.value).startswith(
        "lm_eval_tasks: unknown task 'toy_add_mcq' (did you mean 'toy_add_mc'?)"
    )


def test_a_missing_or_unreadable_task_folder_is_a_clear_error(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, lm_eval_include_path=str(tmp_path / "nope"))
    with pytest.raises(
        ConfigError, match=r"lm_eval_include_path: .*nope is not a folder of task YAMLs"
    ):
        load_config(cfg)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.yaml").write_text("task: [unclosed\n")
    with pytest.raises(FtcoreError, match="cannot read task folder"):
        prepare_include_path(broken)
    with pytest.raises(ConfigError) as info:  # validate finds it, and names the file
        load_config(run_config(tmp_path, base_model, lm_eval_include_path=str(broken)))
    assert f"lm_eval_include_path: {broken / 'bad.yaml'} is not a readable task YAML" in str(
        info.value
    )


def test_bad_task_specs_are_config_errors(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, lm_eval_tasks=["mmlu:five"])
    with pytest.raises(ConfigError, match="write tasks as name or name:fewshot"):
        load_config(cfg)


def test_an_unknown_task_stops_the_run_before_training(tmp_path, base_model):
    cfg = run_config(tmp_path, base_model, lm_eval_tasks=["toy_add_mcc"])
    with pytest.raises(FtcoreError, match="unknown task 'toy_add_mcc'"):
        train(load_config(cfg))
    assert not (Path(cfg["output_dir"]) / "model.safetensors").exists()
