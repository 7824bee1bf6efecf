"""The downstream story: copy the template, rename it, build a wheel, install it beside the core in
a fresh virtualenv, and use it through the ftcore CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import CONSTRAINTS, ROOT, clean_env, sh

from ftcore.testing import save_tiny_model


def make_acme(tmp_path):
    """The rename recipe of docs/writing-a-plugin.md, done in Python."""
    package = tmp_path / "ftcore-acme"
    shutil.copytree(ROOT / "templates" / "ftcore-plugin", package)
    for path in package.rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace("example", "acme"))
    (package / "src" / "ftcore_example").rename(package / "src" / "ftcore_acme")
    return package


@pytest.mark.slow
def test_template_plugin_installs_beside_the_core_and_runs(tmp_path, base_python):
    package = make_acme(tmp_path)
    wheels = tmp_path / "wheels"
    sh(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", wheels, ROOT / "packages" / "ftcore", package,
    )  # fmt: skip
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert [name.split("-")[0] for name in built] == ["ftcore", "ftcore_acme"]

    venv = tmp_path / "fresh"
    env = clean_env()
    sh(base_python, "-m", "venv", venv, env=env)
    sh(
        venv / "bin/pip",
        "install",
        "-q",
        "-c",
        CONSTRAINTS,
        "pytest",
        *wheels.glob("*.whl"),
        env=env,
    )
    ftcore = venv / "bin" / "ftcore"

    rows = {row["name"]: row for row in json.loads(sh(ftcore, "plugins", "--json", env=env).stdout)}
    assert rows["acme"]["distribution"] == "ftcore-acme"
    assert rows["acme"]["status"] == "installed"
    assert "ftcore_post_model_load" in rows["acme"]["hooks"]

    cfg = tmp_path / "run.yml"
    cfg.write_text(
        "base_model: some/model\ndatasets: [{path: data.jsonl}]\n"
        "plugins: [acme]\nacme_freeze_embeddings: true\n"
    )
    result = sh(ftcore, "validate", cfg, env=env)
    assert result.stdout.strip() == f"config OK: {cfg} (plugins: acme)"
    assert "acme plugin: will freeze the input embeddings" in result.stderr  # ftcore_configure ran

    bad = subprocess.run(
        [str(ftcore), "validate", str(cfg), "adapter=lora"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2
    assert "acme_freeze_embeddings: has no effect with adapter: lora" in bad.stderr  # validate hook

    model_dir = save_tiny_model(str(tmp_path / "tiny"), "llama")
    counted = sh(ftcore, "acme-count", model_dir, env=env).stdout.strip()
    assert counted.endswith("parameters are trainable")

    # The template's own tests (contract included) pass in the fresh venv.
    sh(
        venv / "bin/python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        package / "tests",
        env=env,
    )
