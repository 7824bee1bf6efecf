"""The ``ftcore`` CLI, run as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

FTCORE = shutil.which("ftcore", path=os.path.dirname(sys.executable)) or "ftcore"

COMMAND_PLUGIN = """
from ftcore import hookimpl

@hookimpl
def ftcore_cli_commands():
    return {"hello": "hello_cli:hello"}
"""

HELLO_CLI = """
import sys
import click

@click.command()
@click.argument("who")
def hello(who):
    print("hello " + who + "; torch imported: " + str("torch" in sys.modules))
"""


def run(*args: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FTCORE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_help_is_fast_and_lists_commands():
    run("--help")  # warm the file cache
    start = time.perf_counter()
    result = run("--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    for command in ("train", "preprocess", "validate", "config", "plugins"):
        assert command in result.stdout
    assert elapsed < 2.0, f"ftcore --help took {elapsed:.2f}s"  # generous: CI machines vary


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["validate", "{cfg}"]])
def test_light_commands_do_not_import_torch(tmp_path, args):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text("base_model: x\n")
    args = [a.format(cfg=cfg) for a in args]
    code = (
        "import sys\n"
        "from ftcore.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


def test_validate_prints_ok_and_errors_exit_2(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("base_model: x\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n")
    result = run("validate", str(good), "--learning-rate", "1e-5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"config OK: {good} (plugins: none)"

    bad = tmp_path / "bad.yml"
    bad.write_text("base_model: x\nlearning_rte: 0.1\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr == (
        f"config error in {bad}\n  learning_rte: unknown key (did you mean 'learning_rate'?)\n"
    )
    assert "Traceback" not in result.stderr


def test_validate_notes_local_paths_that_do_not_exist_here(tmp_path):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(
        "base_model: models/base/tiny-lama\n"  # no hub id has two slashes: a local folder
        "datasets:\n  - path: data/train.jsonl\n  - path: tatsu-lab/alpaca\n"
        "  - path: ~nosuchuser/d.jsonl\n"  # pathlib cannot expand it: no traceback
    )
    result = run("validate", str(cfg))
    assert result.returncode == 0, result.stderr  # the config may be meant for another machine
    assert result.stderr.splitlines() == [
        "note: base_model: no folder at models/base/tiny-lama on this machine",
        "note: datasets[0].path: no file or folder at data/train.jsonl on this machine",
        "note: datasets[2].path: no file or folder at ~nosuchuser/d.jsonl on this machine",
    ]


def test_a_local_model_folder_that_does_not_exist_is_named_as_such(tmp_path):
    from ftcore.config import load_config
    from ftcore.errors import FtcoreError
    from ftcore.modeling import load_tokenizer

    cfg = load_config({"base_model": str(tmp_path.name) + "/models/tiny-lama"}).cfg
    with pytest.raises(FtcoreError) as info:  # not the hub's "Repo id must be in the form ..."
        load_tokenizer(cfg)
    assert str(info.value) == (
        f"tokenizer (base_model) not found: no folder at {tmp_path.name}/models/tiny-lama"
    )


def test_a_hub_model_is_announced_before_the_hub_is_asked(monkeypatch, caplog):
    import logging

    from transformers import AutoTokenizer

    from ftcore.config import load_config
    from ftcore.errors import FtcoreError
    from ftcore.modeling import load_tokenizer

    def no_network(name, **kwargs):  # what the hub client raises once its retries are spent
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", no_network)
    cfg = load_config({"base_model": "no-such-org/no-such-model"}).cfg
    with caplog.at_level(logging.INFO, logger="ftcore"), pytest.raises(FtcoreError):
        load_tokenizer(cfg)
    assert caplog.messages[0] == (
        "ftcore: tokenizer (base_model) 'no-such-org/no-such-model' from the Hugging Face hub "
        "(or its local cache)"
    )


def test_missing_config_file_is_one_line(tmp_path):
    result = run("validate", str(tmp_path / "missing.yml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"config file not found: {tmp_path / 'missing.yml'}"
    result = run("config", "reference", str(tmp_path))
    assert result.stderr.strip() == f"{tmp_path} is a folder; give the config's YAML file"


def test_config_show_is_resolved_and_redacted(tmp_path):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text("base_model: x\nhf_token: hf_very_secret\n")
    result = run("config", "show", str(cfg), "seed=3")
    assert result.returncode == 0, result.stderr
    assert "hf_very_secret" not in result.stdout
    assert "seed: 3" in result.stdout
    assert "micro_batch_size: 1" in result.stdout


def test_config_schema_is_json_schema_with_plugin_keys(plugin_site):
    plugin_site.add(
        "ftcore-a",
        {"a": "a_plugin"},
        {
            "a_plugin": """
            from pydantic import BaseModel, Field
            from ftcore import hookimpl

            class Args(BaseModel):
                a_strength: float = Field(0.5, description="How strong.")

            @hookimpl
            def ftcore_config_schema():
                return Args
            """
        },
    )
    result = run("config", "schema", "--plugin", "a", env=plugin_site.env())
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert {"learning_rate", "a_strength"} <= set(schema["properties"])


def test_plugins_lists_installed_plugins_and_their_hooks(plugin_site, tmp_path):
    plugin_site.add("ftcore-hello", {"hello": "hello_plugin"}, {"hello_plugin": COMMAND_PLUGIN})
    plugin_site.add(
        "ftcore-broken", {"broken": "broken_plugin"}, {"broken_plugin": "import nope\n"}
    )
    cfg = tmp_path / "cfg.yml"
    cfg.write_text("plugins: [hello]\n")
    result = run("plugins", "--json", "--config", str(cfg), env=plugin_site.env())
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["hello"]["distribution"] == "ftcore-hello"
    assert rows["hello"]["version"] == "0.1.0"
    assert rows["hello"]["status"] == "active"
    assert rows["hello"]["hooks"] == ["ftcore_cli_commands"]
    assert rows["broken"]["status"] == "error"
    assert "No module named 'nope'" in rows["broken"]["error"]

    env = {**plugin_site.env(), "FTCORE_DISABLE_PLUGINS": "hello"}
    table = run("plugins", env=env).stdout.splitlines()
    assert table[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS"]
    hello = next(
        line for line in table if line.startswith("hello ")
    )  # other plugins may be installed
    assert hello.split()[:4] == ["hello", "ftcore-hello", "0.1.0", "blocked"]


def test_plugin_subcommand_is_listed_and_imported_lazily(plugin_site):
    plugin_site.add(
        "ftcore-hello",
        {"hello": "hello_plugin"},
        {"hello_plugin": COMMAND_PLUGIN, "hello_cli": HELLO_CLI},
    )
    env = plugin_site.env()
    assert "[plugin hello]" in run("--help", env=env).stdout
    result = run("hello", "world", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello world; torch imported: False"


def test_train_validates_before_anything_else(tmp_path):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text("micro_batch_size: -1\n")
    result = run("train", str(cfg))
    assert result.returncode == 2
    assert "micro_batch_size: must be greater than 0, got -1" in result.stderr


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "ftcore", "--version"], capture_output=True, text=True
    )
    assert result.stdout.strip().startswith("ftcore, version ")


def test_import_ftcore_does_not_import_torch():
    code = (
        "import sys, ftcore, ftcore.hookspecs, ftcore.host, ftcore.config, ftcore.cli; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_port_out_of_range_is_a_usage_error(tmp_path):
    result = run("inference", str(tmp_path / "cfg.yml"), "--gradio", "--port", "99999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'--port': 99999 is not in the range 0<=x<=65535" in result.stderr
