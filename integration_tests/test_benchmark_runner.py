"""The benchmark runner (``python -m benchmarks.run``) on the CPU: its result file, also when cut off."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT, sh

sys.path.insert(0, str(ROOT))
from benchmarks import run as runner


def test_tiny_scenario_writes_ratios_against_the_first_variant(tmp_path):
    sh(sys.executable, "-m", "benchmarks.run", "tiny", "--variants", "ftcore,ftcore",
       "--steps", "2", "--warmup", "1", "--out", tmp_path, cwd=ROOT)  # fmt: skip
    (result,) = tmp_path.glob("tiny-ftcore-ftcore-*.json")
    entry = json.loads(result.read_text())["results"]["ftcore"]
    assert entry["steps_timed"] == 2
    assert entry["tokens_per_s"] > 0 and entry["tokens_per_s_ratio"] == 1.0
    assert entry["wall_s"] > 0
    # where a variant's time goes, to plan device calls by: start-up, warm-up, timed steps
    assert 0 < entry["startup_s"] < entry["wall_s"] and entry["warmup_s"] >= 0


def test_a_variant_cut_off_is_recorded_as_unfinished(tmp_path, monkeypatch):
    def fake_run(name, base, scenario, args, work):
        if name == "cce":  # as a device call's time limit stops the run
            raise KeyboardInterrupt
        return {"tokens_per_s": 100.0, "peak_memory_gib": 1.0}

    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["run", "tiny", "--variants", "ftcore,cce,liger",
                                      "--out", str(tmp_path)])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        runner.main()
    (result,) = tmp_path.glob("tiny-ftcore-cce-liger-*.json")
    results = json.loads(result.read_text())["results"]
    assert results["ftcore"]["tokens_per_s"] == 100.0
    assert results["cce"] == {"error": runner.UNFINISHED}
    assert "liger" not in results
