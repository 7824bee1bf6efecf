"""The one test entry point of the monorepo.

``nox`` runs every default session; ``nox -l`` lists them. Each package is tested in its own
virtualenv holding only the core, that package and its declared dependencies, installed with the
pinned versions of ``constraints.txt`` (regenerate it with ``nox -s lock``).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = ROOT / "constraints.txt"
REPORTS = ROOT / ".ci-reports"
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
INTEGRATIONS = [name for name in PACKAGES if name != "ftcore"]
# Core extras that add a feature rather than an integration package: `ftcore inference --gradio`,
# the `deepspeed:` key.
FEATURE_EXTRAS = {"gradio", "deepspeed"}
DEV_TOOLS = ["pytest", "hatchling", "build", "ruff"]
# Bounds of the development environment, beyond each package's own ranges: llmcompressor 0.14 pins
# transformers>=5.15,<=5.17 and torch<=2.14; torch 2.13.0 is the CPU build CI installs.
# triton: the pin of torch 2.13.0's CUDA build (the CPU build here has none, and would lock the
# newest, which then conflicts with torch on every GPU machine)
LOCK_BOUNDS = ["transformers>=5.15,<=5.17", "torch==2.13.0", "triton==3.7.1"]

# With FTCORE_NOX_DISCARD_VENVS set (.ci/run sets it), a test session deletes its virtualenv when it
# ends: each holds 1.5-2.5 GB, mostly torch and triton, and CI machines may not have room for 14.
DISCARD_VENVS = bool(os.environ.get("FTCORE_NOX_DISCARD_VENVS"))

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    *(f"tests-{name}" for name in PACKAGES),
    "integration",
    "lint",
    "check-extras",
]


def discards_venv(session_func):
    """Delete the session's virtualenv when it ends, pass or fail, if DISCARD_VENVS is set."""

    @functools.wraps(session_func)
    def wrapper(session: nox.Session) -> None:
        try:
            session_func(session)
        finally:
            location = getattr(session.virtualenv, "location", None)
            venv = Path(location).resolve() if location else None
            if DISCARD_VENVS and venv and venv.is_relative_to(ROOT / ".nox"):
                shutil.rmtree(venv, ignore_errors=True)
                session.log(f"discarded {venv.relative_to(ROOT)}")

    return wrapper


def install(session: nox.Session, *args: str) -> None:
    session.install("-c", str(CONSTRAINTS), *args)


def pytest(session: nox.Session, report: str, *paths: str) -> None:
    REPORTS.mkdir(exist_ok=True)
    session.run(
        "pytest",
        *paths,
        f"--junitxml={REPORTS / report}.xml",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


def _package_tests(name: str):
    @discards_venv
    def session_func(session: nox.Session) -> None:
        # Each package brings its own test dependencies through its `test` extra.
        targets = (
            ["packages/ftcore[test]"]
            if name == "ftcore"
            else ["packages/ftcore", f"packages/{name}[test]"]
        )
        install(session, *targets)
        pytest(session, name, f"packages/{name}/tests")

    session_func.__doc__ = (
        f"Tests of {name}, in a venv of only the core, {name} and its dependencies."
    )
    return session_func


def _package_build(name: str):
    def session_func(session: nox.Session) -> None:
        install(session, "build")
        session.run("python", "-m", "build", f"packages/{name}", "--outdir", str(ROOT / "dist"))

    session_func.__doc__ = f"Build the sdist and wheel of {name} into dist/."
    return session_func


for _name in PACKAGES:
    nox.session(name=f"tests-{_name}")(_package_tests(_name))
    nox.session(name=f"build-{_name}")(_package_build(_name))


@nox.session
@discards_venv
def integration(session: nox.Session) -> None:
    """Tests across packages: every package together, the CLI end to end, the plugin template."""
    install(session, *DEV_TOOLS, *(f"packages/{name}" for name in PACKAGES))
    pytest(session, "integration", "integration_tests")


@nox.session
@discards_venv
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


def core_extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "packages/ftcore/pyproject.toml").read_text())
    extras = data["project"].get("optional-dependencies", {})
    return {name: deps for name, deps in extras.items() if name not in {"test", *FEATURE_EXTRAS}}


@nox.session(name="check-extras", python=False)
def check_extras(session: nox.Session) -> None:
    """The core declares exactly one extra per integration package, and `all` holds them all."""
    expected = {name.removeprefix("ftcore-") for name in INTEGRATIONS}
    extras = core_extras()
    declared = set(extras) - {"all"}
    problems = []
    if declared != expected:
        if missing := expected - declared:
            problems.append(f"extras missing for packages: {sorted(missing)}")
        if extra := declared - expected:
            problems.append(f"extras without a package in packages/: {sorted(extra)}")
    for name in sorted(declared & expected):
        if not any(re.match(rf"ftcore-{re.escape(name)}\b", dep) for dep in extras[name]):
            problems.append(f"extra '{name}' does not require ftcore-{name}")
    if expected and sorted(extras.get("all", [])) != sorted(f"ftcore[{n}]" for n in expected):
        problems.append("extra 'all' must list ftcore[<name>] for every integration")
    if problems:
        session.error("; ".join(problems))
    session.log(f"extras match packages/: {sorted(expected) or 'no integration packages yet'}")


@nox.session
def lock(session: nox.Session) -> None:
    """Regenerate constraints.txt: the pinned versions of everything the sessions install."""
    packages = (f"packages/{name}[test]" for name in PACKAGES)
    session.install(*DEV_TOOLS, "nox", *LOCK_BOUNDS, *packages)
    frozen = session.run("python", "-m", "pip", "freeze", "--all", silent=True)
    local = {name.replace("-", "_") for name in PACKAGES} | set(PACKAGES)
    lines = []
    for line in sorted(frozen.splitlines(), key=str.lower):
        name = re.split(r"[=@ ]", line, maxsplit=1)[0].strip()
        if not name or name.lower() in local or name.lower() in {"pip", "setuptools", "wheel"}:
            continue
        lines.append(re.sub(r"\+cpu$", "", line))  # the pin, not this machine's CPU-only build
    header = "# Pinned development environment. Regenerate with: nox -s lock\n"
    CONSTRAINTS.write_text(header + "\n".join(lines) + "\n")
    session.log(f"wrote {len(lines)} pins to {CONSTRAINTS.name}")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the generated docs (configuration and hook reference, integration pages)."""
    install(session, *(f"packages/{name}" for name in PACKAGES))
    session.run("python", "docs/generate.py")
