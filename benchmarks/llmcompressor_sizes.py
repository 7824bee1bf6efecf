"""On-disk size of one model saved dense, 2:4-sparse, and 2:4-sparse + W8A8 through ftcore.

    python -m benchmarks.llmcompressor_sizes

A llama-shaped model (hidden 512, 4 layers, about 13M parameters in its linear layers) is saved
dense, pruned 2:4 with `ftcore sparsify` (one-shot SparseGPT), fine-tuned 4 steps with the
llmcompressor plugin (sparse only, and with a W8A8 quantization stage), and every save is measured.
Result: benchmarks/results/llmcompressor-sizes-<date>.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [
    f"re:.*{n}$"
    for n in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
]


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def main() -> None:
    from ftcore.config import load_config
    from ftcore.pipeline import train
    from ftcore.testing import data, save_tiny_model

    work = Path(tempfile.mkdtemp())
    dense = save_tiny_model(
        str(work / "dense"), "llama", hidden_size=512, intermediate_size=1536, head_dim=64,
        num_attention_heads=8, num_key_value_heads=8, num_hidden_layers=4,
    )  # fmt: skip
    common = {
        "datasets": [{"path": data.write_jsonl(work / "add.jsonl", data.addition_rows(1))}],
        "sequence_len": 16, "micro_batch_size": 4, "max_steps": 4, "bf16": False,
        "dataset_prepared_path": str(work / "prepared"),
    }  # fmt: skip
    config = work / "sparsify.yml"
    config.write_text(json.dumps({**common, "base_model": dense, "output_dir": str(work / "x")}))
    subprocess.run(
        [sys.executable, "-m", "ftcore", "sparsify", str(config), "--samples", "32", "--output", str(work / "sparse")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pruning = {
        "ft": {"ft_modifiers": {"ConstantPruningModifier": {"targets": TARGETS, "start": 0}}}
    }
    quant = {
        "q": {
            "q_modifiers": {
                "QuantizationModifier": {
                    "targets": ["Linear"],
                    "scheme": "W8A8",
                    "ignore": ["lm_head"],
                }
            }
        }
    }
    for name, recipe in (
        ("finetuned-sparse", pruning),
        ("finetuned-sparse-w8a8", {**pruning, **quant}),
    ):
        cfg = {**common, "base_model": str(work / "sparse"), "plugins": ["llmcompressor"],
               "output_dir": str(work / name), "llmcompressor": {"recipe": recipe, "save_compressed": True}}  # fmt: skip
        train(load_config(cfg))
    sizes = {
        "dense (float32)": weights_bytes(Path(dense)),
        "2:4 sparse (ftcore sparsify)": weights_bytes(work / "sparse"),
        "2:4 sparse, fine-tuned, save_compressed": weights_bytes(work / "finetuned-sparse"),
        "2:4 sparse + W8A8, fine-tuned, save_compressed": weights_bytes(
            work / "finetuned-sparse-w8a8"
        ),
    }
    payload = {"benchmark": "llmcompressor-sizes", "date": date.today().isoformat(), "bytes": sizes,
               "model": "llama, hidden 512, 4 layers, vocab 128"}  # fmt: skip
    out = ROOT / "benchmarks" / "results" / f"llmcompressor-sizes-{payload['date']}.json"
    out.write_text(json.dumps(payload, indent=2))
    for name, size in sizes.items():
        print(f"{name:<50} {size / 1e6:8.2f} MB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
