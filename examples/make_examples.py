"""Regenerate the examples' model folder and data (all committed; no download needed).

    python examples/make_examples.py

* ``models/tiny-llama``: a llama config (about 0.4M parameters) and the testing kit's
  character-level tokenizer; ``model_init: random`` builds the weights from the config.
* ``data/addition.jsonl``: single-digit sums as text, ``{"text": "3+4=7"}``, every pair 20 times
  in a random order.
* ``models/modular-97`` and ``data/modular-97-{train,val}.jsonl``: Grokfast's task, ``(a + b) mod
  97`` with one token per number; half of all pairs train, the other half validate.
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


def make_modular(p: int = 97) -> None:
    """A word-level tokenizer (one token per residue), a small llama, and the two halves."""
    import random

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ftcore.testing import data, tiny_model_config

    words = ["<pad>", "<s>", "</s>", "<unk>", "+", "="] + [str(n) for n in range(p)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    model_dir = HERE / "models" / f"modular-{p}"
    tokenizer.save_pretrained(str(model_dir))
    config = tiny_model_config(
        "llama",
        vocab_size=len(words),
        hidden_size=128,
        intermediate_size=512,
        head_dim=32,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=16,
    )
    config.save_pretrained(str(model_dir))

    pairs = [(a, b) for a in range(p) for b in range(p)]
    random.Random(0).shuffle(pairs)
    half = len(pairs) // 2
    for name, part in (("train", pairs[:half]), ("val", pairs[half:])):
        rows = [
            {
                "segments": [
                    {"text": f"{a} + {b} =", "label": False},
                    {"text": f" {(a + b) % p}", "label": True},
                ]
            }
            for a, b in part
        ]
        data.write_jsonl(HERE / "data" / f"modular-{p}-{name}.jsonl", rows)


if __name__ == "__main__":
    main()
    make_modular()
