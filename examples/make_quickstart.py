"""Regenerate the quickstart's model folder and data (both are committed; no download needed).

    python examples/make_quickstart.py

* ``models/tiny-llama``: a llama config (about 0.4M parameters) and the testing kit's
  character-level tokenizer; ``model_init: random`` builds the weights from the config.
* ``data/addition.jsonl``: single-digit sums as text, ``{"text": "3+4=7"}``, every pair 20 times
  in a random order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    from ftcore.testing import load_tiny_tokenizer, tiny_model_config

    model_dir = HERE / "models" / "tiny-llama"
    config = tiny_model_config(
        "llama", hidden_size=128, intermediate_size=256, head_dim=32, num_key_value_heads=4
    )
    config.save_pretrained(str(model_dir))
    load_tiny_tokenizer().save_pretrained(str(model_dir))

    pairs = [(a, b) for a in range(10) for b in range(10)] * 20
    random.Random(0).shuffle(pairs)
    lines = [json.dumps({"text": f"{a}+{b}={a + b}"}) for a, b in pairs]
    (HERE / "data" / "addition.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
