"""The testing kit's tiny tokenizer: one token per printable ASCII character, ChatML markers.

It ships as files in ``assets/tiny-tokenizer`` (no hub, no download). :func:`build_tiny_tokenizer`
rebuilds it from scratch; a test checks that the shipped files match the build.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

TINY_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tiny-tokenizer"

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHARACTERS = [c for c in string.printable if c not in "\r\x0b\x0c"]

# ChatML, with {% generation %} around what the assistant says so that transformers can return the
# assistant-token mask that chat_template datasets train on.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tiny_tokenizer() -> Any:
    """Build the tiny tokenizer from scratch (``transformers.PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def load_tiny_tokenizer() -> Any:
    """Load the shipped tiny tokenizer (about 100 tokens)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))


if __name__ == "__main__":  # regenerate the shipped files: python -m ftcore.testing.tokenizer
    build_tiny_tokenizer().save_pretrained(str(TINY_TOKENIZER_DIR))
