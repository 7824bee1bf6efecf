"""ftcore's testing kit, an opt-in pytest plugin.

Enable it in a ``conftest.py`` with ``pytest_plugins = ["ftcore.testing"]`` (or ``-p ftcore.testing``).

Fixtures:

* ``tiny_tokenizer`` / ``tiny_tokenizer_path`` -- a character-level tokenizer shipped as files.
* ``tiny_model`` -- a factory: ``tiny_model("qwen3_moe")`` builds a random-weight model.
* ``hook_recorder`` -- records every hook call of hosts created during the test.
* ``plugin_site`` -- a :class:`PluginSite` on ``sys.path`` for made-up installed plugins.

Tests marked ``@pytest.mark.gpu`` are skipped where CUDA is not available. The local plugin
``ftcore.testing.plugins.stop_at_step`` stops a run at ``$STOP_AT_STEP``, for resume tests.

Helpers: :class:`PluginContract`, :func:`build_tiny_model`, :func:`tiny_model_config`,
:data:`TINY_MODEL_FAMILIES`, :func:`load_tiny_tokenizer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ftcore.testing.contract import PluginContract
from ftcore.testing.models import (
    TINY_MODEL_FAMILIES,
    build_tiny_model,
    save_tiny_model,
    tiny_model_config,
)
from ftcore.testing.numerics import loss_and_gradients, relative_error
from ftcore.testing.recorder import HookCall, HookRecorder
from ftcore.testing.site import PluginSite
from ftcore.testing.tokenizer import TINY_TOKENIZER_DIR, load_tiny_tokenizer

__all__ = [
    "TINY_MODEL_FAMILIES",
    "TINY_TOKENIZER_DIR",
    "HookCall",
    "HookRecorder",
    "PluginContract",
    "PluginSite",
    "build_tiny_model",
    "load_tiny_tokenizer",
    "loss_and_gradients",
    "relative_error",
    "save_tiny_model",
    "tiny_model_config",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA GPU; skipped where none is present (run on the GPU machine)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests cleanly on machines without CUDA (CI)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_tokenizer_path() -> Path:
    """Folder of the shipped tiny tokenizer (usable as ``tokenizer_config``)."""
    return TINY_TOKENIZER_DIR


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    """The tiny tokenizer, loaded once per session. Do not mutate it; load your own to change it."""
    return load_tiny_tokenizer()


@pytest.fixture
def tiny_model() -> Callable[..., Any]:
    """Factory of tiny random-weight models: ``tiny_model("llama", seed=0, num_hidden_layers=1)``."""
    return build_tiny_model


@pytest.fixture
def hook_recorder() -> Iterator[HookRecorder]:
    """Records the hook calls of every plugin host created during the test."""
    with HookRecorder() as recorder:
        yield recorder


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    """A made-up ``site-packages`` on ``sys.path``: ``plugin_site.add("ftcore-foo", {"foo": "foo_mod"}, ...)``."""
    site = PluginSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site.root))
    yield site
    site.forget_modules()
