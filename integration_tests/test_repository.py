"""The repository as a new user meets it: the README's commands, generated docs, examples."""

from __future__ import annotations

import re
import subprocess
import sys

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
    result = sh("bash", "-c", setup, cwd=checkout, env=env)
    assert "config OK: examples/quickstart.yml" in result.stdout
    listed = sh(checkout / ".venv/bin/ftcore", "plugins", cwd=checkout, env=env)
    assert listed.returncode == 0


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
