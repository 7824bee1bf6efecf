"""GRPO on a tiny model against NeMo Gym servers on 127.0.0.1; auto-start and stop."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from gym_servers import HeadServer, ResourcesServer

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.pipeline import train
from ftcore.testing import save_tiny_model

HERE = Path(__file__).parent


def rows(count: int = 16) -> list[dict]:
    return [{"responses_create_params": {"input": [{"role": "user", "content": f"{i % 5}+1="}]},
             "expected_answer": str(i % 5 + 1)} for i in range(count)]  # fmt: skip


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gym_config(tmp_path: Path, base_model: str, head_port: int, **keys) -> dict:
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    return {
        "base_model": base_model, "rl": "grpo", "plugins": ["nemo-gym"],
        "trl": {"num_generations": 4, "max_completion_length": 4},
        "datasets": [{"path": str(data), "type": "nemo_gym"}],
        "nemo_gym_enabled": True, "nemo_gym_auto_start": False, "nemo_gym_head_port": head_port,
        "nemo_gym_datasets": [{"path": str(data), "server_name": "math"}],
        "nemo_gym_verify_timeout": 2, "nemo_gym_retries": 1,
        "sequence_len": 32, "micro_batch_size": 4, "max_steps": 3, "learning_rate": 1e-3,
        "logging_steps": 1, "bf16": False, "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }  # fmt: skip


def log_history(output_dir: str) -> list[dict]:
    state = sorted(Path(output_dir).glob("checkpoint-*/trainer_state.json"))[-1]
    return [e for e in json.loads(state.read_text())["log_history"] if "loss" in e]


def test_grpo_trains_against_verify(tmp_path, base_model):
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        cfg = gym_config(tmp_path, base_model, head.port)
        train(load_config(cfg))
    logs = log_history(cfg["output_dir"])
    assert len(logs) == 3 and math.calls == 3 * 4 * 1  # every completion scored once
    assert all(e["nemo_gym/verify_failures"] == 0 for e in logs)
    assert "rewards/reward_nemo_gym_verify/mean" in logs[0]


def test_a_server_that_dies_mid_run_is_counted_not_hidden(tmp_path, base_model, caplog):
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        cfg = gym_config(tmp_path, base_model, head.port, max_steps=4)
        math.faults["500"] = 4 * 2  # steps 1 and 2 fail on both tries ...
        train(load_config(cfg))
    logs = log_history(cfg["output_dir"])
    assert [e["nemo_gym/verify_failures"] for e in logs] == [4, 0, 0, 0]
    assert "4 NeMo Gym /verify calls failed since the last log (4 HTTP 500)" in caplog.text


def test_config_rules(tmp_path, base_model):
    cfg = gym_config(tmp_path, base_model, 1, rl=None, trl={}, nemo_gym_multi_turn=True)
    cfg.pop("rl")
    cfg.pop("trl")
    with pytest.raises(ConfigError) as error:
        load_config(cfg)
    message = str(error.value)
    assert "rl: NeMo Gym environments train with rl: grpo" in message
    assert "multi-turn rollouts through agent /run are not supported" in message


STAND_IN_CLI = """\
#!{python}
import runpy, sys
sys.path.insert(0, {tests!r})
sys.argv = ["gym_servers", *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def stand_in_gym(tmp_path: Path, body: str | None = None) -> Path:
    """A NeMo Gym checkout whose CLI serves the protocol (the real CLI needs Gym's own venvs)."""
    gym = tmp_path / "Gym"
    cli = gym / ".venv" / "bin" / "ng_run"
    cli.parent.mkdir(parents=True)
    cli.write_text(body or STAND_IN_CLI.format(python=sys.executable, tests=str(HERE),
                                               script=str(HERE / "gym_servers.py")))  # fmt: skip
    cli.chmod(0o755)
    return gym


def test_auto_start_uses_the_head_port_and_stops_what_it_started(tmp_path, base_model):
    port = free_port()
    gym = stand_in_gym(tmp_path)
    cfg = gym_config(tmp_path, base_model, port, nemo_gym_auto_start=True, nemo_gym_dir=str(gym),
                     nemo_gym_config_paths=["configs/math.yaml"], max_steps=1)  # fmt: skip
    loaded = load_config(cfg)
    plugin = next(p for p in loaded.host.pm.get_plugins() if type(p).__name__ == "NemoGymPlugin")
    train(loaded)
    log = (Path(cfg["output_dir"]) / "nemo_gym_servers.log").read_text()
    assert f"++head_server.port={port}" in log and "+config_paths=[configs/math.yaml]" in log
    process_gone = plugin.servers.process is None
    with pytest.raises(FtcoreError):  # nothing answers any more: the servers were stopped
        from ftcore_nemo_gym.discovery import discover

        discover("127.0.0.1", port, timeout=1)
    assert process_gone


def test_a_cli_that_fails_to_start_shows_its_log(tmp_path, base_model):
    gym = stand_in_gym(tmp_path, "#!/bin/sh\necho 'ray failed to start: no GPU' >&2\nexit 3\n")
    cfg = gym_config(tmp_path, base_model, free_port(), nemo_gym_auto_start=True, nemo_gym_dir=str(gym),
                     nemo_gym_config_paths=["configs/math.yaml"])  # fmt: skip
    with pytest.raises(
        FtcoreError, match=r"exited with status 3 while starting(.|\n)*ray failed to start"
    ):
        train(load_config(cfg))
    assert not (Path(cfg["output_dir"]) / "model.safetensors").exists()
    assert os.path.exists(Path(cfg["output_dir"]) / "nemo_gym_servers.log")
