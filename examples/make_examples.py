"""Regenerate the examples' model folder and data (all committed; no download needed).

    python examples/make_examples.py

* ``models/tiny-llama``: a llama config (about 0.4M parameters) and the testing kit's
  character-level tokenizer; ``model_init: random`` builds the weights from the config.
* ``data/addition.jsonl``: single-digit sums as text, ``{"text": "3+4=7"}``, every pair 20 times
  in a random order.
* ``data/preference.jsonl``, ``data/kto.jsonl``, ``data/prompts.jsonl``: the same task as
  preference pairs, KTO labels and GRPO prompts (``ftcore.testing.data`` makes them).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    from ftcore.testing import data, load_tiny_tokenizer, tiny_model_config

    model_dir = HERE / "models" / "tiny-llama"
    config = tiny_model_config(
        "llama", hidden_size=128, intermediate_size=256, head_dim=32, num_key_value_heads=4
    )
    config.save_pretrained(str(model_dir))
    load_tiny_tokenizer().save_pretrained(str(model_dir))

    data.write_jsonl(HERE / "data" / "addition.jsonl", data.addition_rows())
    data.write_jsonl(HERE / "data" / "preference.jsonl", data.preference_rows(256))
    data.write_jsonl(HERE / "data" / "kto.jsonl", data.kto_rows(256))
    data.write_jsonl(HERE / "data" / "prompts.jsonl", data.prompt_rows(128))


if __name__ == "__main__":
    main()
