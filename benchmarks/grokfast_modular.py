"""Optimizer steps to 95% validation accuracy on (a + b) mod 97, with and without Grokfast.

    python -m benchmarks.grokfast_modular [--max-steps 5000] [--probe-every 50]

Both variants train examples/grokfast-modular-addition.yml through ``ftcore train`` with the same
seed and settings; the baseline sets ``grokfast_lamb=0``, which leaves the gradients unfiltered. The probe plugin
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
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "grokfast-modular-addition.yml"
# The baseline keeps the plugin with grokfast_lamb=0, where the filter adds nothing to the gradient:
# one config, one difference.
VARIANTS = {
    "grokfast": [],
    "baseline": ["grokfast_lamb=0"],
}


def run_variant(
    name: str, extra: list[str], args: argparse.Namespace, work: Path, logs: Path
) -> dict:
    log = logs / f"{name}.jsonl"  # kept even if the run is cut short
    log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PROBE_VAL": str(ROOT / "examples/data/modular-97-val.jsonl"),
        "PROBE_LOG": str(log),
        "PROBE_EVERY": str(args.probe_every),
        "PROBE_TARGET": str(args.target),
        "PROBE_DEADLINE": str(time.time() + args.time_limit),
    }
    command = [
        sys.executable, "-m", "ftcore", "train", str(CONFIG), *args.overrides, *extra,
        "plugins=[grokfast, benchmarks.grokking_probe]",
        f"max_steps={args.max_steps}", f"output_dir={work / name}",
        f"dataset_prepared_path={work / 'prepared'}", "save_steps=100000", "logging_steps=50",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(
        command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
        stderr=open(work / f"{name}.log", "w"),  # noqa: SIM115
    )  # fmt: skip
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
    parser.add_argument("--max-steps", type=int, default=40000)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--time-limit", type=float, default=3600, help="seconds per variant")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="a config override for both variants, e.g. --set weight_decay=0.005",
    )
    parser.add_argument("--label", default="", help="suffix of the result file name")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    import torch

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    )
    logs = Path(args.out) / f"grokfast-modular-curves{'-' + args.label if args.label else ''}"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(len(VARIANTS)) as pool:
        # The variants run side by side: a model this small leaves the device mostly idle.
        futures = {
            name: pool.submit(run_variant, name, extra, args, Path(tmp), logs)
            for name, extra in VARIANTS.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    for name, result in results.items():
        print(f"{name}: {result['steps_to_target']} steps to {args.target:.0%} "
              f"(final accuracy {result['final_val_accuracy']:.3f} at step "
              f"{result['final_step']}, {result['seconds']} s)")  # fmt: skip
    import transformers

    payload = {
        "benchmark": "grokfast-modular-addition",
        "date": date.today().isoformat(),
        "device": device,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "settings": {"config": str(CONFIG.relative_to(ROOT)), **vars(args)},
        "results": results,
    }
    suffix = f"-{args.label}" if args.label else ""
    out = Path(args.out) / f"grokfast-modular-{payload['date']}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
