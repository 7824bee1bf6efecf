"""Optimizer steps to 95% validation accuracy on (a + b) mod 97, with and without Grokfast.

    python -m benchmarks.grokfast_modular [--max-steps 5000] [--probe-every 50]

Both variants train examples/grokfast-modular-addition.yml through ``ftcore train`` with the same
seed and settings; only the ``grokfast`` plugin differs. The probe plugin
(``benchmarks.grokking_probe``) measures held-out accuracy. Results go to
``benchmarks/results/grokfast-modular-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "grokfast-modular-addition.yml"
VARIANTS = {
    "grokfast": "[grokfast, benchmarks.grokking_probe]",
    "baseline": "[benchmarks.grokking_probe]",
}


def run_variant(name: str, plugins: str, args: argparse.Namespace, work: Path) -> dict:
    log = work / f"{name}.jsonl"
    env = {
        **os.environ,
        "PROBE_VAL": str(ROOT / "examples/data/modular-97-val.jsonl"),
        "PROBE_LOG": str(log),
        "PROBE_EVERY": str(args.probe_every),
        "PROBE_TARGET": str(args.target),
    }
    command = [
        sys.executable, "-m", "ftcore", "train", str(CONFIG), f"plugins={plugins}",
        f"max_steps={args.max_steps}", f"output_dir={work / name}",
        f"dataset_prepared_path={work / 'prepared'}", "save_steps=100000", "logging_steps=50",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    probes = [json.loads(line) for line in log.read_text().splitlines()]
    reached = next((p["step"] for p in probes if p["val_accuracy"] >= args.target), None)
    return {
        "steps_to_target": reached,
        "final_step": probes[-1]["step"],
        "final_val_accuracy": probes[-1]["val_accuracy"],
        "seconds": round(seconds, 1),
        "curve": probes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    import torch

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, plugins in VARIANTS.items():
            results[name] = run_variant(name, plugins, args, Path(tmp))
            print(f"{name}: {results[name]['steps_to_target']} steps to {args.target:.0%} "
                  f"(final accuracy {results[name]['final_val_accuracy']:.3f} at step "
                  f"{results[name]['final_step']}, {results[name]['seconds']} s)")  # fmt: skip
    import transformers

    payload = {
        "benchmark": "grokfast-modular-addition",
        "date": date.today().isoformat(),
        "device": device,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "settings": {"config": str(CONFIG.relative_to(ROOT)), **vars(args)},
        "results": results,
    }
    out = Path(args.out) / f"grokfast-modular-{payload['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
