"""Tiny random-weight models, built from configs (no hub, no download), for fast CPU tests."""

from __future__ import annotations

from typing import Any

#: Model families the kit builds, by ``model_type``.
TINY_MODEL_FAMILIES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "phi3",
    "qwen3_moe",
    "mixtral",
    "gemma3_text",
    "olmo2",
)

_COMMON = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}

_PER_FAMILY: dict[str, dict[str, Any]] = {
    "qwen3_moe": {
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "decoder_sparse_step": 1,
    },
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "gemma2": {"sliding_window": 128, "query_pre_attn_scalar": 16},
    "gemma3_text": {"sliding_window": 128, "query_pre_attn_scalar": 16},
    "phi3": {"pad_token_id": 0},
}


def tiny_model_config(family: str, vocab_size: int = 128, **overrides: Any) -> Any:
    """A ``transformers`` config of ``family`` with two layers and a 64-wide hidden state.

    :param vocab_size: at least the tokenizer's length (the tiny tokenizer has 103 tokens).
    :param overrides: any config attribute, e.g. ``num_hidden_layers=4``.
    """
    from transformers import AutoConfig

    if family not in TINY_MODEL_FAMILIES:
        raise ValueError(
            f"unknown tiny model family '{family}'; choose one of {', '.join(TINY_MODEL_FAMILIES)}"
        )
    kwargs = {
        **_COMMON,
        "vocab_size": vocab_size,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        **_PER_FAMILY.get(family, {}),
        **overrides,
    }
    return AutoConfig.for_model(family, **kwargs)


def build_tiny_model(family: str = "llama", seed: int = 0, **config_overrides: Any) -> Any:
    """A randomly initialised ``AutoModelForCausalLM`` of ``family``, seeded, in float32."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_model_config(family, **config_overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def save_tiny_model(
    path: str, family: str = "llama", seed: int = 0, **config_overrides: Any
) -> str:
    """Save a tiny model and the tiny tokenizer to ``path`` (a ``base_model`` for configs)."""
    from ftcore.testing.tokenizer import load_tiny_tokenizer

    build_tiny_model(family, seed, **config_overrides).save_pretrained(path)
    load_tiny_tokenizer().save_pretrained(path)
    return path
