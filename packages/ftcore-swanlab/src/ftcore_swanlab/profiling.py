"""Time functions and blocks of code into SwanLab: ``profiling/Time taken: Class.method``.

Nothing is logged when no SwanLab run is active; a timed call that raises is still logged, then
the exception propagates.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProfilingConfig:
    """Which timings are logged: ``enabled``, at least ``min_duration_ms``, every ``log_interval``-th call."""

    enabled: bool = True
    min_duration_ms: float = 0.1
    log_interval: int = 1
    _calls: dict[str, int] = field(default_factory=dict, repr=False)

    def should_log(self, key: str, duration_ms: float) -> bool:
        count = self._calls.get(key, 0) + 1
        self._calls[key] = count
        return (
            self.enabled and duration_ms >= self.min_duration_ms and count % self.log_interval == 0
        )


DEFAULT_PROFILING_CONFIG = ProfilingConfig()


def _owner(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


def _log(key: str, seconds: float, config: ProfilingConfig) -> None:
    try:
        import swanlab

        if swanlab.has_run() and config.should_log(key, seconds * 1000):
            swanlab.log({f"profiling/Time taken: {key}": seconds})
    except Exception:  # profiling must never break what it measures
        pass


@contextmanager
def swanlab_profiling_context(
    owner: Any, name: str, config: ProfilingConfig | None = None
) -> Iterator[None]:
    """Time the ``with`` block as ``profiling/Time taken: <owner class>.<name>``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _log(
            f"{_owner(owner)}.{name}",
            time.perf_counter() - start,
            config or DEFAULT_PROFILING_CONFIG,
        )


def swanlab_profile(
    function: Callable[..., Any] | None = None, *, config: ProfilingConfig | None = None
):
    """Decorate a method (``@swanlab_profile`` or ``@swanlab_profile(config=...)``) to time each call."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            owner = args[0] if args else func.__module__
            with swanlab_profiling_context(owner, func.__name__, config):
                return func(*args, **kwargs)

        return timed

    return wrap(function) if function is not None else wrap
