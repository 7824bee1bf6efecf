"""The reference of the dense benchmarks: a minimal hand-written training loop on plain transformers.

    python -m benchmarks.plain_loop CONFIG.json OUT.json

CONFIG holds the model folder, the sequence length, the micro-batch, and the warm-up and timed
step counts. The model is built from its config with random weights in bf16 (as ``ftcore train``
builds it with ``bf16: true``), attention is SDPA, the optimizer fused AdamW, the loss the
transformers causal-LM loss; every step is CUDA-synchronised and timed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(config_path: str, out_path: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = json.loads(Path(config_path).read_text(encoding="utf-8"))
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(settings["model"])
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).cuda()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch, length = settings["micro_batch_size"], settings["sequence_len"]
    generator = torch.Generator().manual_seed(0)
    times, losses = [], []
    for step in range(settings["warmup"] + settings["steps"]):
        ids = torch.randint(0, config.vocab_size - 1024, (batch, length), generator=generator)
        ids = ids.cuda(non_blocking=True)
        torch.cuda.synchronize()
        if step == settings["warmup"]:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the Trainer does
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= settings["warmup"]:
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
    median = sorted(times)[len(times) // 2]
    result = {
        "steps_timed": len(times),
        "median_step_s": median,
        "tokens_per_s": batch * length / median,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "last_loss": losses[-1],
    }
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(*sys.argv[1:3])
