"""The repository as a new user meets it: the README's commands, generated docs, examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import ROOT, clean_env, copy_checkout, sh


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    tests = readme_commands()[1]
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.slow
def test_readme_setup_command_works_in_a_fresh_checkout(tmp_path):
    checkout = copy_checkout(tmp_path / "clone")
    setup = readme_commands()[0]
    env = clean_env()
    start = time.perf_counter()
    result = sh("bash", "-c", setup, cwd=checkout, env=env)
    print(f"README setup + quickstart: {time.perf_counter() - start:.0f} s")
    assert result.stdout.strip().splitlines()[-1] == "7"  # what the model learned

    manifest = json.loads((checkout / "outputs/quickstart/ftcore_run.json").read_text())
    print(
        f"quickstart: {manifest['metrics']['train_runtime']:.1f} s training, metrics {manifest['metrics']}"
    )
    state = json.loads(
        next((checkout / "outputs/quickstart").glob("checkpoint-*/trainer_state.json")).read_text()
    )
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses[0] > 4 and losses[-1] < 1.0, losses

    ftcore = checkout / ".venv/bin/ftcore"
    answers = subprocess.run(
        [ftcore, "inference", "examples/quickstart.yml"], input="2+2=\n9+8=\n", capture_output=True, text=True, cwd=checkout, env=env
    )  # fmt: skip
    assert answers.stdout.split() == ["4", "17"]
    listed = sh(ftcore, "plugins", cwd=checkout, env=env)
    assert listed.stdout.startswith("no plugins installed")


def test_generated_docs_are_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_example_validates():
    examples = sorted((ROOT / "examples").glob("*.yml"))
    assert examples
    for example in examples:
        sh(sys.executable, "-m", "ftcore", "validate", example, cwd=ROOT)


def test_every_package_has_the_house_layout():
    for package in sorted((ROOT / "packages").iterdir()):
        for name in ("pyproject.toml", "README.md", "CHANGELOG.md", "src", "tests"):
            assert (package / name).exists(), f"{package.name} lacks {name}"


def test_each_package_states_one_version():
    """pyproject.toml, ``__version__`` and the CHANGELOG's latest entry agree."""
    for package in sorted((ROOT / "packages").iterdir()):
        version = re.search(r'^version = "(.+)"', (package / "pyproject.toml").read_text(), re.M)[1]
        (init,) = (package / "src").glob("*/__init__.py")
        assert f'__version__ = "{version}"' in init.read_text(), f"{init} is not at {version}"
        latest = re.search(r"^## (\S+)", (package / "CHANGELOG.md").read_text(), re.M)[1]
        assert latest == version, f"{package.name}'s CHANGELOG starts at {latest}, not {version}"
