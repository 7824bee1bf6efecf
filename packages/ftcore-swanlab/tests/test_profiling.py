"""Profiling helpers log into the active SwanLab run, and never break what they time."""

from __future__ import annotations

import time

import pytest
import swanlab
from swanlab_files import read_scalars, run_files

from ftcore_swanlab.profiling import ProfilingConfig, swanlab_profile, swanlab_profiling_context


class Worker:
    @swanlab_profile
    def step(self):
        return 42

    @swanlab_profile(config=ProfilingConfig(min_duration_ms=0.0, log_interval=2))
    def often(self):
        return 1

    @swanlab_profile
    def broken(self):
        time.sleep(0.002)  # above the default 0.1 ms threshold
        raise ValueError("boom")


def test_timings_are_logged_and_exceptions_propagate(tmp_path):
    swanlab.init(project="profiling", mode="offline", log_dir=str(tmp_path), workspace="team")
    try:
        worker = Worker()
        assert worker.step() == 42
        for _ in range(4):
            worker.often()
        with pytest.raises(ValueError, match="boom"):
            worker.broken()
        with swanlab_profiling_context(worker, "block", ProfilingConfig(min_duration_ms=0.0)):
            sum(range(1000))
    finally:
        swanlab.finish()
    scalars = read_scalars(run_files(tmp_path)[0])
    assert len(scalars["profiling/Time taken: Worker.often"]) == 2  # every 2nd of 4 calls
    assert "profiling/Time taken: Worker.broken" in scalars
    assert "profiling/Time taken: Worker.block" in scalars


def test_without_a_run_nothing_is_logged_and_nothing_breaks():
    assert not swanlab.has_run()
    assert Worker().step() == 42


def test_min_duration_filters_fast_calls():
    config = ProfilingConfig(min_duration_ms=50.0)
    assert config.should_log("x", 10.0) is False
    assert config.should_log("x", 60.0) is True
    assert ProfilingConfig(enabled=False).should_log("x", 1e6) is False
