"""Single MoE experts block, forward + backward, per experts implementation (GPU).

    python -m benchmarks.moe_block [--tokens 8192,32768]
                                   [--backends grouped_mm,scattermoe,sonicmoe,liger,eager]
                                   [--lora 16] [--profile]

The experts of one Qwen3-MoE-shaped layer (hidden 2048, 128 experts, top-8, moe ffn 768, bf16)
get the same hidden states and the same routing under every backend; routing is ``uniform``
(random router logits) or ``skewed`` (a quarter of the experts take most of the tokens). Times are
CUDA-event medians; the output of each backend is checked against the first one's. (transformers'
``batched_mm`` is left out: it gathers a weight matrix per token, 384 GiB at 8192 tokens.)
``liger`` is liger-kernel's fused MoE (``LigerExperts.forward``, which
``apply_liger_kernel_to_qwen3_moe`` puts on the experts); its first pass autotunes 32 configs per
GEMM, so set ``TRITON_CACHE_AUTOTUNING=1`` to keep the picks for the next run.
``--lora R`` puts peft LoRA of rank R on both expert weights (``target_parameters``), frozen base
weights, as in ``adapter: lora`` training; ``FTCORE_MOE_LORA_FUSION=epilogue`` times the other
fusion mode, ``FTCORE_MOE_TILE_ORDER=spread`` the other tile order. Result:
benchmarks/results/moe-block[-lora<R>[-epilogue]][-spread][-<tag>]-<date>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import date
from pathlib import Path

import torch

from benchmarks.run import tuning_settings
from benchmarks.step_timer import costliest_kernels

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"hidden_size": 2048, "num_experts": 128, "num_experts_per_tok": 8,
         "moe_intermediate_size": 768}  # fmt: skip


def routing(tokens: int, kind: str, generator: torch.Generator):
    logits = torch.randn(tokens, SHAPE["num_experts"], device="cuda", generator=generator)
    if kind == "skewed":
        logits[:, : SHAPE["num_experts"] // 4] += 2.5
    weights, index = torch.topk(logits.softmax(-1), SHAPE["num_experts_per_tok"], dim=-1)
    return index, (weights / weights.sum(-1, keepdim=True)).bfloat16()


def with_lora(experts, rank: int):
    """``experts`` with peft LoRA of ``rank`` on both weights (the base weights frozen)."""
    from peft import LoraConfig, inject_adapter_in_model

    from ftcore_moe_kernels.peft_factors import hand_over_factors

    holder = torch.nn.Module()
    holder.experts = experts
    config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False, target_modules=[],
                        target_parameters=["experts.gate_up_proj", "experts.down_proj"])  # fmt: skip
    inject_adapter_in_model(config, holder)
    for name, parameter in holder.named_parameters():
        parameter.requires_grad_("lora_" in name)
    hand_over_factors(holder, "scattermoe")  # as ftcore does after attaching the adapter
    return holder.experts


def forward_of(experts, name: str):
    """The callable that runs ``experts`` under backend ``name``."""
    if name == "liger":
        from liger_kernel.transformers.swiglu import LigerExperts

        return lambda hidden, index, weights: LigerExperts.forward(experts, hidden, index, weights)
    config = (
        experts.get_base_layer().config if hasattr(experts, "get_base_layer") else experts.config
    )
    config._experts_implementation = name
    return experts


def profile_backend(forward, experts, hidden, index, weights, iterations: int = 3) -> list[dict]:
    """The 15 GPU kernels that take the most time in a forward + backward pass (after timing)."""
    from torch.profiler import ProfilerActivity, profile

    grad_out = torch.randn_like(hidden)
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(iterations):
            forward(hidden.detach().requires_grad_(True), index, weights).backward(grad_out)
            experts.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    events = costliest_kernels(profiler)
    return [{"kernel": event.key[:120], "calls_per_pass": event.count / iterations,
             "ms_per_pass": event.self_device_time_total / 1000 / iterations}
            for event in events[:15]]  # fmt: skip


def time_backend(forward, experts, hidden, index, weights, repeats: int):
    grad_out = torch.randn_like(hidden)
    times, output = [], None
    for step in range(repeats + 3):
        if step == 3:  # the peak of the timed passes only: the first pass may autotune
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        x = hidden.detach().requires_grad_(True)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = forward(x, index, weights)
        out.backward(grad_out)
        end.record()
        torch.cuda.synchronize()
        if step >= 3:
            times.append(start.elapsed_time(end))
        output = out.detach()
        experts.zero_grad(set_to_none=True)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {"median_ms": statistics.median(times), "peak_extra_mib": peak}, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="8192,32768")
    parser.add_argument("--backends", default="grouped_mm,scattermoe,eager")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank on the experts (0: none)")
    parser.add_argument("--profile", action="store_true", help="also record the GPU kernels")
    parser.add_argument("--tag", default="", help="a word appended to the result file's name")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeExperts

    from ftcore_moe_kernels import experts as scattermoe
    from ftcore_moe_kernels import sonic
    from ftcore_moe_kernels.kernels import LORA_FUSION, TILE_ORDER

    backends = args.backends.split(",")
    if args.lora and "liger" in backends:
        parser.error(
            "--lora with liger: LigerExperts reads peft's folded weights; time it whole-model"
        )
    scattermoe.register()
    if "sonicmoe" in backends:
        sonic.check_sonicmoe()
        sonic.register()
    config = Qwen3MoeConfig(**SHAPE)
    torch.manual_seed(0)
    experts = Qwen3MoeExperts(config).to("cuda", torch.bfloat16)
    for parameter in experts.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    if args.lora:
        experts = with_lora(experts, args.lora)
    results: dict[str, dict] = {}
    for tokens in map(int, args.tokens.split(",")):
        for kind in ("uniform", "skewed"):
            generator = torch.Generator(device="cuda").manual_seed(tokens)
            hidden = torch.randn(tokens, SHAPE["hidden_size"], device="cuda", dtype=torch.bfloat16,
                                 generator=generator)  # fmt: skip
            index, weights = routing(tokens, kind, generator)
            case, reference = {}, None
            for name in backends:
                forward = forward_of(experts, name)
                case[name], output = time_backend(
                    forward, experts, hidden, index, weights, args.repeats
                )
                if args.profile:
                    case[name]["kernels"] = profile_backend(
                        forward, experts, hidden, index, weights
                    )
                if reference is None:
                    reference = output
                error = (output.float() - reference.float()).norm() / reference.float().norm()
                case[name]["relative_error_vs_first"] = error.item()
                print(f"{tokens:>6} {kind:<8} {name:<11} {case[name]['median_ms']:8.2f} ms "
                      f"{case[name]['peak_extra_mib']:8.0f} MiB  err {error.item():.1e}")  # fmt: skip
            first = case[backends[0]]["median_ms"]
            for row in case.values():
                row["speedup_vs_first"] = first / row["median_ms"]
            results[f"{tokens}-{kind}"] = case
    fusion = LORA_FUSION if args.lora else None
    name = ["moe-block"]
    if args.lora:
        name.append(f"lora{args.lora}")
    if fusion == "epilogue":
        name.append(fusion)
    if TILE_ORDER != "grouped":  # the default since ftcore-moe-kernels 0.4.1
        name.append(TILE_ORDER)
    if args.tag:
        name.append(args.tag)
    out = Path(args.out) / f"{'-'.join(name)}-{date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "moe-block", "gpu": torch.cuda.get_device_name(), "shape": SHAPE,
               "lora_rank": args.lora, "lora_fusion": fusion, "tile_order": TILE_ORDER,
               "tuning": tuning_settings(), "torch": torch.__version__, "results": results}  # fmt: skip
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
