"""GRPO on a tiny model against NeMo Gym servers on 127.0.0.1; auto-start and stop."""

from __future__ import annotations

import json
import os
import socket
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from gym_servers import HeadServer, ResourcesServer

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError
from ftcore.pipeline import train
from ftcore.testing import save_tiny_model

HERE = Path(__file__).parent


def rows(count: int = 16) -> list[dict]:
    return [{"responses_create_params": {"input": [{"role": "user", "content": f"{i}+1="}]},
             "expected_answer": str(i + 1)} for i in range(count)]  # fmt: skip


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gym_config(tmp_path: Path, base_model: str, head_port: int, **keys) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
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


def test_a_server_that_never_answers_stops_the_run(tmp_path, base_model):
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        cfg = gym_config(tmp_path, base_model, head.port, max_steps=6)
        math.faults["500"] = 10_000
        with pytest.raises(FtcoreError, match=r"every NeMo Gym call failed in the last 3 logs"):
            train(load_config(cfg))
    assert math.calls == 3 * 4 * 2  # three steps, four completions, one try and one retry each
    assert not (Path(cfg["output_dir"]) / "model.safetensors").exists()


def test_a_server_name_the_head_server_does_not_list_stops_before_the_model_loads(
    tmp_path, base_model, hook_recorder
):
    with ResourcesServer() as math, HeadServer({"math": math.url}) as head:
        cfg = gym_config(tmp_path, base_model, head.port)
        cfg["nemo_gym_datasets"][0]["server_name"] = "nosuch"
        with pytest.raises(FtcoreError, match=r"server_name: 'nosuch' is not a resources server"):
            train(load_config(cfg))
    assert "ftcore_post_model_build" not in hook_recorder.names and math.calls == 0


KILLER = """
import gym_servers

from ftcore import hookimpl

@hookimpl
def ftcore_callbacks(cfg, model):
    return [gym_servers.stop_after_step(gym_servers.DOOMED[0], 2)]
"""


def test_a_server_that_goes_away_mid_run_is_counted_and_training_finishes(
    tmp_path, base_model, plugin_site, caplog
):
    import gym_servers

    plugin_site.add("unused", {}, {"testplugins.killer": KILLER})
    math = ResourcesServer().__enter__()
    gym_servers.DOOMED[:] = [math]
    with HeadServer({"math": math.url}) as head:
        cfg = gym_config(tmp_path, base_model, head.port, max_steps=4,
                         plugins=["nemo-gym", "testplugins.killer"])  # fmt: skip
        train(load_config(cfg))
    logs = log_history(cfg["output_dir"])
    assert [e["nemo_gym/verify_failures"] for e in logs] == [0, 0, 4, 4]
    assert "(4 ConnectError)" in caplog.text
    assert (Path(cfg["output_dir"]) / "model.safetensors").is_file()


def test_config_rules(tmp_path, base_model):
    cfg = gym_config(tmp_path, base_model, 1)
    cfg.pop("rl")
    cfg.pop("trl")
    with pytest.raises(ConfigError, match="rl: NeMo Gym environments train with rl: grpo"):
        load_config(cfg)
    cfg = gym_config(tmp_path, base_model, 1, nemo_gym_multi_turn=True)
    cfg["trl"]["use_vllm"] = True
    with pytest.raises(ConfigError, match="generated by the NeMo Gym agents' model server"):
        load_config(cfg)


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


def test_an_agent_answer_becomes_tokens_logprobs_and_an_environment_mask():
    from ftcore_nemo_gym.rollouts import parse_episode

    answer = {"reward": 0.5, "response": {"output": [
        {"type": "function_call", "prompt_token_ids": [1, 2], "generation_token_ids": [3, 4],
         "generation_log_probs": [-0.1, -0.2]},
        {"type": "function_call_output", "output": "sunny"},
        {"type": "message", "prompt_token_ids": [1, 2, 3, 4, 9, 9], "generation_token_ids": [5],
         "generation_log_probs": [-0.3]},
    ]}}  # fmt: skip
    assert parse_episode(answer) == {
        "prompt_ids": [1, 2], "completion_ids": [3, 4, 9, 9, 5],
        "logprobs": [-0.1, -0.2, 0.0, 0.0, -0.3], "env_mask": [1, 1, 0, 0, 1], "env_reward": 0.5,
    }  # fmt: skip
    broken = json.loads(json.dumps(answer))
    broken["response"]["output"][2]["prompt_token_ids"] = [7, 7]
    with pytest.raises(ValueError, match="turn 1 does not extend"):
        parse_episode(broken)
    with pytest.raises(ValueError, match="return_token_id_information"):
        parse_episode({"reward": 0, "response": {"output": [{"type": "message"}]}})


def test_multi_turn_grpo_trains_on_agent_episodes(tmp_path, base_model):
    from gym_servers import AgentServer
    from transformers import AutoModelForCausalLM

    from ftcore.testing import load_tiny_tokenizer

    policy = AutoModelForCausalLM.from_pretrained(base_model)
    with ResourcesServer() as math, AgentServer(policy, load_tiny_tokenizer()) as agent:
        head = HeadServer(
            {"math": math.url}, agents={"math_agent": "math"}, agent_urls={"math_agent": agent.url}
        )
        with head:
            cfg = gym_config(tmp_path, base_model, head.port, nemo_gym_multi_turn=True, nemo_gym_datasets=[],
                             sequence_len=96,
                             trl={"num_generations": 4, "max_completion_length": 4, "temperature": 1.0})  # fmt: skip
            Path(cfg["datasets"][0]["path"]).write_text(
                "".join(
                    json.dumps(r | {"agent_ref": {"name": "math_agent"}}) + "\n" for r in rows()
                )
            )
            agent.faults["first prompt"] = 1  # every episode of the first prompt fails, retries too
            train(load_config(cfg))
    logs = log_history(cfg["output_dir"])
    assert (agent.calls, len(agent.requests)) == (2 * 4, 2 * 4 + 4 * 2)
    assert agent.requests[0]["responses_create_params"]["max_output_tokens"] == 4
    assert "rewards/reward_env/mean" in logs[0]
    # two turns of two generated tokens; the tool's tokens are masked out of the loss and lengths
    lengths = [e["completions/mean_length"] for e in logs]
    assert lengths[1:] == [4.0, 4.0], lengths  # step 1's episodes failed: nothing to learn
    assert [e["nemo_gym/verify_failures"] for e in logs] == [4, 0, 0]
    # the agents' sampling logprobs correct the loss: TRL's importance-sampling ratio is logged
    ratios = [e["sampling/importance_sampling_ratio/mean"] for e in logs[1:]]
    assert all(0.5 < r < 2.0 for r in ratios), ratios


STEP_CLOCK = """
import os, time

from transformers import TrainerCallback

from ftcore import hookimpl

class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(float(os.environ["SIMULATED_STEP_S"]))  # the optimizer work of a bigger model
        with open(os.environ["STEP_TIMES"], "a") as handle:
            handle.write(f"{time.perf_counter()}\\n")

@hookimpl
def ftcore_callbacks(cfg, model):
    return [Clock()]
"""


def test_async_prefetch_overlaps_episodes_with_training(
    tmp_path, base_model, plugin_site, monkeypatch
):
    """Episodes of 0.6 s, a training step of 0.6 s: one after the other without prefetch, side by
    side with it. A perfect overlap halves the step; the ratio measured is printed."""
    from gym_servers import AgentServer
    from transformers import AutoModelForCausalLM

    from ftcore.testing import load_tiny_tokenizer

    plugin_site.add("unused", {}, {"testplugins.clock": STEP_CLOCK})
    monkeypatch.setenv("SIMULATED_STEP_S", "0.6")
    policy = AutoModelForCausalLM.from_pretrained(base_model)
    periods = {}
    with ResourcesServer() as math, AgentServer(policy, load_tiny_tokenizer(), delay=0.6) as agent:
        head = HeadServer(
            {"math": math.url}, agents={"math_agent": "math"}, agent_urls={"math_agent": agent.url}
        )
        with head:
            for prefetch in (False, True):
                times = tmp_path / f"times-{prefetch}.txt"
                monkeypatch.setenv("STEP_TIMES", str(times))
                cfg = gym_config(tmp_path / str(prefetch), base_model, head.port, nemo_gym_multi_turn=True,
                                 nemo_gym_datasets=[], nemo_gym_async_prefetch=prefetch, sequence_len=96,
                                 max_steps=6, plugins=["nemo-gym", "testplugins.clock"],
                                 trl={"num_generations": 4, "max_completion_length": 4})  # fmt: skip
                Path(cfg["datasets"][0]["path"]).write_text(
                    "".join(
                        json.dumps(r | {"agent_ref": {"name": "math_agent"}}) + "\n" for r in rows()
                    )
                )
                calls_before = agent.calls
                train(load_config(cfg))
                # every step once; with prefetch also the batch after the last step (started, unused)
                assert agent.calls - calls_before == 6 * 4 + 4 * prefetch
                stamps = [float(x) for x in times.read_text().split()]
                gaps = sorted(b - a for a, b in pairwise(stamps))
                periods[prefetch] = gaps[len(gaps) // 2]
    ratio = periods[True] / periods[False]
    print(
        f"async prefetch: step {periods[False]:.2f} s -> {periods[True]:.2f} s (ratio {ratio:.2f})"
    )
    assert ratio < 0.8, periods
