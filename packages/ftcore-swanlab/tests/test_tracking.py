"""A real SwanLab run (offline mode) of a tiny training, read back from disk."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
from lark_server import LarkServer
from swanlab_files import read_scalars, run_files

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model

API_KEY = "sk-swan-VERYSECRET-123"
LARK_SECRET = "lark-HMAC-SECRET-456"


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def run_config(tmp_path: Path, base_model: str, **keys) -> dict:
    return {
        "base_model": base_model,
        "plugins": ["swanlab"],
        "datasets": [{"path": data.write_jsonl(tmp_path / "d.jsonl", data.addition_rows(1))}],
        "sequence_len": 16,
        "micro_batch_size": 8,
        "max_steps": 6,
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        "swanlab_project": "ftcore-tests",
        "swanlab_experiment_name": "tiny",
        "swanlab_mode": "offline",
        "swanlab_workspace": "team",
        **keys,
    }


def all_text_under(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
    )


def test_defaults_and_validation():
    assert load_config({"plugins": ["swanlab"]}).cfg.use_swanlab is False
    assert load_config({"plugins": ["swanlab"], "swanlab_project": "p"}).cfg.use_swanlab is True
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["swanlab"], "use_swanlab": True})
    assert (
        str(info.value.problems[0])
        == "swanlab_project: required when use_swanlab is true: name the project"
    )
    with pytest.raises(ConfigError, match="swanlab_project: must not be empty"):
        load_config({"plugins": ["swanlab"], "use_swanlab": True, "swanlab_project": " "})
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["swanlab"], "swanlab_project": "p", "swanlab_mode": "ofline"})
    assert "(did you mean 'offline'?)" in str(info.value)


def test_a_webhook_address_without_a_scheme_is_a_config_error_that_hides_it():
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["swanlab"], "swanlab_project": "p", "swanlab_mode": "offline",
                     "swanlab_lark_webhook_url": "open.feishu.cn/open-apis/bot/v2/hook/t0k3n"})  # fmt: skip
    assert "swanlab_lark_webhook_url: must be an http(s):// address" in str(info.value)
    assert "t0k3n" not in str(info.value)


@pytest.mark.skipif(
    importlib.util.find_spec("swanboard") is not None, reason="swanboard is installed"
)
def test_local_mode_without_the_dashboard_is_a_config_error():
    with pytest.raises(ConfigError, match=r"swanlab_mode: local needs SwanLab's dashboard"):
        load_config({"plugins": ["swanlab"], "swanlab_project": "p", "swanlab_mode": "local"})


def test_a_service_error_at_start_is_not_blamed_on_the_log_folder(
    tmp_path, base_model, monkeypatch
):
    import requests
    import swanlab

    def refuse(**kwargs):  # what SwanLab's ApiError is: an HTTPError, so an OSError too
        raise requests.HTTPError("403 workspace not found")

    monkeypatch.setattr(swanlab, "init", refuse)
    cfg = run_config(tmp_path, base_model, swanlab_project="p", swanlab_mode="offline")
    with pytest.raises(FtcoreError, match=r"swanlab: cannot start the run \(HTTPError: 403"):
        train(load_config(cfg))


def test_an_empty_swanlab_mode_variable_does_not_override_the_config(
    tmp_path, base_model, monkeypatch
):
    monkeypatch.setenv("SWANLAB_MODE", "")
    cfg = run_config(tmp_path, base_model, swanlab_project="p", swanlab_mode="offline", max_steps=1)
    train(load_config(cfg))
    assert run_files(Path(cfg["output_dir"]) / "swanlog")


def test_a_log_folder_that_cannot_be_written_is_named(tmp_path, base_model, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(blocker / "logs"))
    cfg = run_config(tmp_path, base_model, swanlab_project="p", swanlab_mode="offline")
    with pytest.raises(FtcoreError, match=r"swanlab: cannot write its logs in .*a-file/logs"):
        train(load_config(cfg))


def test_cloud_without_a_key_and_lark_without_a_secret_warn(caplog, monkeypatch):
    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        load_config(
            {"plugins": ["swanlab"], "swanlab_project": "p", "swanlab_lark_webhook_url": "http://x"}
        )
    assert any("no API key is set" in m for m in caplog.messages)
    assert any("the Lark webhook has no secret" in m for m in caplog.messages)


def test_several_trackers_warn(caplog):
    from types import SimpleNamespace

    from ftcore_swanlab.plugin import SwanLabPlugin

    with caplog.at_level(logging.WARNING, logger="ftcore"):
        SwanLabPlugin()._warn_about_other_trackers(
            SimpleNamespace(args=SimpleNamespace(report_to=["wandb"]))
        )
        SwanLabPlugin()._warn_about_other_trackers(
            SimpleNamespace(args=SimpleNamespace(report_to=["wandb", "mlflow"]))
        )
    assert caplog.messages == [
        "ftcore: two experiment trackers at once (swanlab, wandb)",
        "ftcore: 3 experiment trackers at once (swanlab, wandb, mlflow): each adds overhead to every "
        "logging step; keep one or two",
    ]


def test_a_run_logs_metrics_config_and_manifest_and_notifies_lark(
    tmp_path, base_model, caplog, capsys, monkeypatch
):
    # As if the secrets were also given as overrides on the command line, which SwanLab records.
    argv = [
        "ftcore",
        "train",
        "c.yml",
        f"swanlab_lark_secret={LARK_SECRET}",
        "--swanlab-api-key",
        API_KEY,
    ]
    monkeypatch.setattr("sys.argv", argv)
    with LarkServer() as server, caplog.at_level(logging.INFO):
        cfg = run_config(
            tmp_path, base_model, swanlab_api_key=API_KEY, swanlab_lark_webhook_url=server.url,
            swanlab_lark_secret=LARK_SECRET,
        )  # fmt: skip
        train(load_config(cfg))
    out = Path(cfg["output_dir"])
    [run_file] = run_files(out / "swanlog")
    scalars = read_scalars(run_file)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert {"train/learning_rate", "train/grad_norm", "train/epoch"} <= set(scalars)
    config = (run_file.parent / "files" / "config.yaml").read_text()
    assert "ftcore-tests" in config and "ftcore_manifest" in config

    texts = [body["content"]["text"] for body in server.received]
    assert texts[0] == "ftcore: training started: tiny"
    assert texts[1].startswith("ftcore: training finished: tiny (6 steps, train_loss ")
    from ftcore_swanlab.lark import sign

    assert all(body["sign"] == sign(body["timestamp"], LARK_SECRET) for body in server.received)

    # No secret anywhere: files of the run, the output folder, logs, console.
    printed = capsys.readouterr()
    everything = all_text_under(out) + "\n".join(caplog.messages) + printed.out + printed.err
    for secret in (API_KEY, LARK_SECRET, "t0k3n"):
        assert secret not in everything, secret


@pytest.mark.parametrize("behaviour", ["error", "hang"])
def test_a_failing_webhook_never_stops_training(tmp_path, base_model, behaviour):
    with LarkServer(behaviour, hang_seconds=8) as server:
        cfg = run_config(tmp_path, base_model, swanlab_lark_webhook_url=server.url, max_steps=2)
        train(load_config(cfg))
    assert (Path(cfg["output_dir"]) / "model.safetensors").is_file()
    assert len(server.received) == 2


FAILING = """
from ftcore import hookimpl

@hookimpl
def ftcore_post_trainer_create(cfg, trainer):
    raise RuntimeError("disk on fire")
"""


def test_a_failed_run_is_reported_to_lark(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"swanplugins.failing": FAILING})
    with LarkServer() as server:
        cfg = run_config(
            tmp_path, base_model, plugins=["swanlab", "swanplugins.failing"],
            swanlab_lark_webhook_url=server.url, swanlab_lark_secret=LARK_SECRET,
        )  # fmt: skip
        with pytest.raises(RuntimeError, match="disk on fire"):
            train(load_config(cfg))
    texts = [body["content"]["text"] for body in server.received]
    assert texts == [
        "ftcore: training started: tiny",
        "ftcore: training failed: tiny: RuntimeError: disk on fire",
    ]


def test_grpo_completions_become_bounded_tables(tmp_path, base_model):
    cfg = run_config(
        tmp_path, base_model, rl="grpo", max_steps=4, micro_batch_size=4,
        trl={"num_generations": 4, "max_completion_length": 4,
             "reward_funcs": ["ftcore.testing.data:exact_answer_reward"]},
        datasets=[{"path": data.write_jsonl(tmp_path / "p.jsonl", data.prompt_rows(16)), "type": "prompt"}],
        swanlab_completion_log_interval=2, swanlab_completion_max_buffer=6,
    )  # fmt: skip
    train(load_config(cfg))
    [run_file] = run_files(Path(cfg["output_dir"]) / "swanlog")
    tables = sorted((run_file.parent / "media" / "echarts").glob("*.json"))
    assert len(tables) == 2  # steps 2 and 4; nothing left for the final flush
    table = json.loads(tables[0].read_text())
    text = json.dumps(table)
    assert "exact_answer_reward" in text and "advantage" in text
    assert text.count('"+') + text.count("+") > 0  # prompts such as "3+4=" are in the rows


SAMPLER = """
from transformers import TrainerCallback

from ftcore import hookimpl
from ftcore.tracking import log_samples

TRAINER = []

class AtStep3(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            log_samples(TRAINER[0], "previews", [{"masked": "3+4=[MASK]", "generated": "3+4=7"}])

@hookimpl
def ftcore_post_trainer_create(cfg, trainer):
    TRAINER[:] = [trainer]

@hookimpl
def ftcore_callbacks(cfg, model):
    return [AtStep3()]
"""


def test_plugin_samples_become_a_table(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.sampler": SAMPLER})
    cfg = run_config(tmp_path, base_model, plugins=["swanlab", "testplugins.sampler"])
    train(load_config(cfg))
    [run_file] = run_files(Path(cfg["output_dir"]) / "swanlog")
    [table] = (run_file.parent / "media" / "echarts").glob("*.json")
    text = json.dumps(json.loads(table.read_text()))
    assert "3+4=[MASK]" in text and "3+4=7" in text and "generated" in text
