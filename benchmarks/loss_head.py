"""The loss-head micro-benchmark of the CCE paper (Table 1): loss and gradient of a linear layer
followed by cross entropy, for plain torch, Cut Cross Entropy and Liger's fused linear cross entropy.

    python -m benchmarks.loss_head [--tokens 8192 --vocab 256000 --hidden 2304 --iters 20]

Memory is the peak allocated during loss+backward beyond the inputs (hidden states, classifier,
targets) and their gradients' storage, as the paper counts it; time is the median of CUDA-event
timed iterations after warm-up. Result: benchmarks/results/loss-head-<date>.json
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def methods():
    import torch
    import torch.nn.functional as F

    def plain(e, c, t):
        return F.cross_entropy((e @ c.T).float(), t)

    def cce(e, c, t):
        from cut_cross_entropy import linear_cross_entropy

        return linear_cross_entropy(e, c, t)

    def liger(e, c, t):
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        return liger_fused_linear_cross_entropy(e, c, t)

    def compiled_plain(e, c, t):
        return _compiled(e, c, t)

    _compiled = torch.compile(plain)
    return {"torch": plain, "torch.compile": compiled_plain, "cce": cce, "liger": liger}


def measure(fn, e, c, t, iters: int, warmup: int = 3) -> dict:
    import torch

    for _ in range(warmup):
        fn(e, c, t).backward()
        e.grad = c.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = fn(e, c, t)
        loss.backward()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        losses.append(loss.item())
        e.grad = c.grad = None
    peak = torch.cuda.max_memory_allocated() - base
    grads = e.numel() * e.element_size() + c.numel() * c.element_size()
    return {
        "ms": sorted(times)[len(times) // 2],
        "memory_mb": (peak - grads) / 2**20,
        "memory_with_grads_mb": peak / 2**20,
        "loss": losses[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=256000)
    parser.add_argument("--hidden", type=int, default=2304)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    import torch

    from benchmarks.run import versions

    torch.manual_seed(0)
    e = (torch.randn(args.tokens, args.hidden, device="cuda") / args.hidden**0.5).bfloat16()
    c = (torch.randn(args.vocab, args.hidden, device="cuda") / args.hidden**0.25).bfloat16()
    e.requires_grad_(True)
    c.requires_grad_(True)
    t = torch.randint(0, args.vocab, (args.tokens,), device="cuda")
    results = {}
    for name, fn in methods().items():
        try:
            results[name] = measure(fn, e, c, t, args.iters)
        except Exception as error:  # a method that cannot run here is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
    print(f"{'method':<14} {'ms':>8} {'MB':>10} {'loss':>8}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<14} {r['error']}")
        else:
            print(f"{name:<14} {r['ms']:>8.1f} {r['memory_mb']:>10.0f} {r['loss']:>8.4f}")
    payload = {
        "benchmark": "loss-head", "date": date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(), "versions": versions(),
        "settings": {"tokens": args.tokens, "vocab": args.vocab, "hidden": args.hidden,
                     "dtype": "bfloat16", "iters": args.iters}, "results": results,
    }  # fmt: skip
    out = Path(args.out) / f"loss-head-{payload['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
