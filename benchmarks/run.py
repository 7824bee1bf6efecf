"""Training-step throughput and memory of ftcore variants on a dense model, measured on the GPU.

    python -m benchmarks.run dense-1b --variants plain,ftcore,cce,liger,liger+cce [--steps 20]
                                      [--profile]

Scenario dense-1b: a Llama-3.2-1B-shaped random model (hidden 2048, 16 layers, 32/8 heads, ffn
8192, vocab 128256, tied), sequence 4096, micro-batch 4, bf16, fused AdamW, no gradient
checkpointing, random tokens. ``plain`` is a hand-written loop on plain transformers
(``benchmarks/plain_loop.py``), the reference; every other variant runs ``ftcore train`` with the
same settings, only the plugins differ. Each variant builds its model from the config in a process
of its own (Liger patches transformers process-wide, so variants must not share one). Ratios are
against the first variant, measured in the same run. Every step is CUDA-synchronised and timed
after the warm-up; ``--profile`` adds the GPU kernels of the last warm-up step (not for ``plain``,
which has no Trainer callbacks). A variant that fails is recorded with its error and the run goes
on; one that a time limit cuts off is recorded as unfinished.
Result: benchmarks/results/<scenario>-<variants>-<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What a variant's entry says until it finishes: a run stopped by a time limit shows where.
UNFINISHED = "unfinished: the run was stopped during this variant"

SCENARIOS = {
    "dense-1b": {
        "model": {
            "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
            "vocab_size": 128256, "tie_word_embeddings": True, "max_position_embeddings": 8192,
        },
        "train": {"sequence_len": 4096, "micro_batch_size": 4},
    },
    "moe-qwen3": {
        "model": {
            "model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 4,
            "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
            "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768,
            "intermediate_size": 6144, "vocab_size": 151936, "max_position_embeddings": 8192,
            "decoder_sparse_step": 1, "mlp_only_layers": [],
        },
        "train": {"sequence_len": 4096, "micro_batch_size": 2},
    },
    "tiny-moe": {  # a smoke test of the MoE variants, on any machine
        "model": {
            "model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 8,
            "num_experts_per_tok": 2, "moe_intermediate_size": 32, "intermediate_size": 128,
            "vocab_size": 130000, "max_position_embeddings": 512, "decoder_sparse_step": 1,
            "mlp_only_layers": [],
        },
        "train": {"sequence_len": 64, "micro_batch_size": 2},
    },
    "tiny": {  # a smoke test of the runner, on any machine
        "model": {
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "vocab_size": 130000, "tie_word_embeddings": True, "max_position_embeddings": 512,
        },
        "train": {"sequence_len": 64, "micro_batch_size": 2},
    },
}  # fmt: skip

LIGER_KERNELS = {"liger_rope": True, "liger_rms_norm": True, "liger_glu_activation": True}

KD = {
    "kd_top_k": 64, "dataloader_num_workers": 2, "env": {"BENCH_KD_TOPK": "64"},
    "datasets": [{"path": "unused-random-tokens", "type": "kd.chat_template"}],
}  # fmt: skip

EXPERT_LORA = {
    "adapter": "lora", "lora_r": 16, "lora_alpha": 32, "lora_target_linear": True,
    "lora_target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
}  # fmt: skip

LIGER = {"plugins": ["liger"], **LIGER_KERNELS, "liger_fused_linear_cross_entropy": True}

VARIANTS = {
    "plain": None,  # benchmarks/plain_loop.py
    "ftcore": {"plugins": []},
    "cce": {"plugins": ["cce"]},
    "liger": LIGER,
    "liger+cce": {"plugins": ["liger", "cce"], **LIGER_KERNELS},
    # KD on a teacher's top-64 per token (random, from random_tokens); workers prefetch the batches
    # MoE experts implementations (scenario moe-qwen3)
    "grouped_mm": {"plugins": ["moe-kernels"], "experts_implementation": "grouped_mm"},
    "eager": {"plugins": ["moe-kernels"], "experts_implementation": "eager"},
    "scattermoe": {"plugins": ["moe-kernels"], "use_scattermoe": True},
    "sonicmoe": {"plugins": ["moe-kernels"], "use_sonicmoe": True},
    "grouped_mm+lora": {
        "plugins": ["moe-kernels"],
        "experts_implementation": "grouped_mm",
        **EXPERT_LORA,
    },
    "scattermoe+lora": {"plugins": ["moe-kernels"], "use_scattermoe": True, **EXPERT_LORA},
    "sonicmoe+lora": {"plugins": ["moe-kernels"], "use_sonicmoe": True, **EXPERT_LORA},
    "eager+lora": {"plugins": ["moe-kernels"], "experts_implementation": "eager", **EXPERT_LORA},
    "liger+lora": {**LIGER, **EXPERT_LORA},
    # the whole-model peak is the 151k-vocabulary logits': with the CCE loss, the experts' share shows
    "scattermoe+cce": {"plugins": ["moe-kernels", "cce"], "use_scattermoe": True},
    "sonicmoe+cce": {"plugins": ["moe-kernels", "cce"], "use_sonicmoe": True},
    "grouped_mm+cce": {"plugins": ["moe-kernels", "cce"], "experts_implementation": "grouped_mm"},
    "kd": {"plugins": ["kd"], **KD},
    "kd-naive": {"plugins": ["kd"], **KD, "kd_chunk_tokens": 0},
    "kd-chunk4096": {"plugins": ["kd"], **KD, "kd_chunk_tokens": 4096},
    # more than one GPU (issue 14): DDP and FSDP2 over 2 processes; compare with `ftcore` on 1, or
    # with `torchrun1`, the same single process started by torchrun
    "torchrun1": {"plugins": [], "nproc": 1},
    "ddp2": {"plugins": [], "nproc": 2},
    "fsdp2": {"plugins": [], "nproc": 2, "fsdp_config": {"reshard_after_forward": True}},
    "diffusion": {
        "plugins": ["diffusion"],
        "diffusion": {"mask_token_id": 128000, "generate_samples": False},
    },
}


def make_model(folder: Path, shape: dict) -> str:
    from transformers import AutoConfig

    from ftcore.testing import load_tiny_tokenizer

    shape = dict(shape)
    AutoConfig.for_model(shape.pop("model_type", "llama"), **shape).save_pretrained(str(folder))
    load_tiny_tokenizer().save_pretrained(str(folder))  # data comes pre-tokenized; unused
    return str(folder)


def run_plain(name: str, base: str, scenario: dict, args: argparse.Namespace, work: Path) -> dict:
    config = work / f"{name}.json"
    settings = {"model": base, "warmup": args.warmup, "steps": args.steps, **scenario["train"]}
    config.write_text(json.dumps(settings))
    out = work / f"{name}-result.json"
    subprocess.run([sys.executable, "-m", "benchmarks.plain_loop", str(config), str(out)], cwd=ROOT,
                   check=True)  # fmt: skip
    return json.loads(out.read_text())


def run(name: str, base: str, scenario: dict, args: argparse.Namespace, work: Path) -> dict:
    variant = VARIANTS[name]
    if variant is None:
        return run_plain(name, base, scenario, args, work)
    cfg = {
        "base_model": base, "model_init": "random", "bf16": True, "optimizer": "adamw_torch_fused",
        "attn_implementation": "sdpa", "learning_rate": 1e-4, "lr_scheduler": "constant",
        "max_steps": args.warmup + args.steps, "logging_steps": args.warmup + args.steps, "save_steps": 100000,
        "datasets": [{"path": "unused-random-tokens"}], "output_dir": str(work / name),
        "plugins": ["benchmarks.random_tokens", "benchmarks.step_timer", *variant["plugins"]],
        **scenario["train"], **{k: v for k, v in variant.items() if k not in ("plugins", "env", "nproc")},
    }  # fmt: skip
    config = work / f"{name}.yml"
    config.write_text(json.dumps(cfg))
    out = work / f"{name}.json"
    nproc = variant.get("nproc", 1)
    env = {**os.environ, "BENCH_OUT": str(out), "BENCH_WARMUP": str(args.warmup),
           "BENCH_ROWS": str((args.warmup + args.steps) * cfg["micro_batch_size"] * nproc),
           **({"BENCH_PROFILE": "1"} if args.profile else {}),
           **variant.get("env", {})}  # fmt: skip
    launch = ["--nproc", str(nproc)] if "nproc" in variant else []
    try:
        subprocess.run([sys.executable, "-m", "ftcore", "train", str(config), *launch], cwd=ROOT,
                       env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    finally:
        # the run's checkpoint and model (17 GB for moe-qwen3) are not what is measured: three
        # variants' worth filled the H200 machine's disk
        shutil.rmtree(work / name, ignore_errors=True)
    return json.loads(out.read_text())


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("torch", "transformers", "peft", "triton", "liger-kernel", "cut-cross-entropy",
                 "ftcore", "ftcore-cce", "ftcore-liger", "ftcore-diffusion", "ftcore-kd",
                 "ftcore-moe-kernels"):  # fmt: skip
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="dense-1b", choices=sorted(SCENARIOS))
    parser.add_argument("--variants", default="plain,ftcore,cce,liger,liger+cce")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="record the last warm-up step's kernels"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    scenario = SCENARIOS[args.scenario]
    names = args.variants.split(",")
    if unknown := [name for name in names if name not in VARIANTS]:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    label = "-".join(name.replace("+", "_") for name in names)
    out = Path(args.out) / f"{args.scenario}-{label}-{date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from ftcore.manifest import write_json_atomically  # a kill mid-write keeps the last file whole

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = make_model(work / "model", scenario["model"])
        # the file is rewritten around each variant: a cut-off run keeps its part
        for name in names:
            results[name] = {"error": UNFINISHED}
            write_json_atomically(out, report(args, scenario, names, results))
            started = time.perf_counter()
            try:
                results[name] = run(name, base, scenario, args, work)
                # the whole process (start, model build, steps): what a device call must plan for
                results[name]["wall_s"] = round(time.perf_counter() - started, 1)
            except (subprocess.CalledProcessError, OSError, json.JSONDecodeError) as error:
                print(f"variant {name} failed: {error}", file=sys.stderr)
                results[name] = {"error": str(error)}
            write_json_atomically(out, report(args, scenario, names, results))
    print(
        f"{'variant':<12} {'tokens/s':>10} {'ratio':>6} {'peak GiB':>9} {'ratio':>6}  vs {names[0]}"
    )
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<12} failed")
            continue
        speed, memory = r.get("tokens_per_s_ratio"), r.get("peak_memory_ratio")
        print(f"{name:<12} {r['tokens_per_s']:>10.0f} {_ratio(speed)} "
              f"{r['peak_memory_gib']:>9.1f} {_ratio(memory)}")  # fmt: skip
    print(f"wrote {out}")


def _ratio(value: float | None) -> str:
    """A ratio for the summary table; a dash where there is none (the reference failed)."""
    return f"{value:>6.3f}" if value else f"{'-':>6}"


def tuning_settings() -> dict[str, str]:
    """The environment settings that change what the kernels do."""
    prefixes = ("FTCORE_", "LIGER_", "TRITON_CACHE", "QUACK_")
    return {name: value for name, value in os.environ.items() if name.startswith(prefixes)}


def report(args: argparse.Namespace, scenario: dict, names: list[str], results: dict) -> dict:
    import torch

    reference = results[names[0]]
    # no ratios for a failed variant, nor for any without the reference
    failed = "error" in reference
    for result in [r for r in results.values() if not failed and "error" not in r]:
        result["tokens_per_s_ratio"] = result["tokens_per_s"] / reference["tokens_per_s"]
        processes = result.get("processes", 1)
        if processes > 1 and reference.get("processes", 1) == 1:  # tokens/s per GPU vs 1 GPU
            result["scaling_efficiency"] = result["tokens_per_s"] / (
                processes * reference["tokens_per_s"]
            )
        peak = reference["peak_memory_gib"]
        result["peak_memory_ratio"] = result["peak_memory_gib"] / peak if peak else None
    return {
        "benchmark": args.scenario, "date": date.today().isoformat(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "reference": names[0], "versions": versions(),
        "tuning": tuning_settings(),
        "settings": {**scenario, "steps": args.steps, "warmup": args.warmup}, "results": results,
    }  # fmt: skip


if __name__ == "__main__":
    main()
