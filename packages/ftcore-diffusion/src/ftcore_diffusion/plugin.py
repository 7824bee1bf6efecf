"""Hook implementations of ftcore-diffusion (torch is imported only inside hooks)."""

from __future__ import annotations

import logging
from typing import Any

from ftcore import hookimpl
from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")

DEFAULT_MASK_TOKEN = "<|diffusion_mask|>"


def resolve_mask_token(block: Any, tokenizer: Any, model: Any = None) -> int:
    """The mask token id: the configured id, an existing token, or a token added now."""
    if block.mask_token_id is not None:
        rows = model.get_input_embeddings().num_embeddings if model is not None else len(tokenizer)
        if block.mask_token_id >= rows:
            raise FtcoreError(
                f"diffusion.mask_token_id: {block.mask_token_id} is outside the vocabulary "
                f"({rows} tokens); give an id below it, or mask_token_str to name (or add) a token"
            )
        if block.mask_token_id in special_ids(tokenizer):
            raise FtcoreError(
                f"diffusion.mask_token_id: {block.mask_token_id} is the BOS, EOS or padding "
                "token, which diffusion never masks; choose another token"
            )
        return block.mask_token_id
    text = block.mask_token_str or DEFAULT_MASK_TOKEN
    token_id = tokenizer.convert_tokens_to_ids(text)
    if token_id is None or token_id == tokenizer.unk_token_id:
        tokenizer.add_special_tokens({"additional_special_tokens": [text]})
        token_id = tokenizer.convert_tokens_to_ids(text)
        if model is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        log.info("ftcore: diffusion added the mask token %s (id %d)", text, token_id)
    return token_id


def special_ids(tokenizer: Any) -> list[int]:
    return sorted(
        {
            i
            for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
            if i is not None
        }
    )


class DiffusionPlugin:
    """Masked diffusion: the loss, the trainer's metrics, samples, and decoding at inference."""

    def __init__(self) -> None:
        self.mask_token_id: int | None = None
        self.special: list[int] = []
        self.trainer: Any = None

    @hookimpl
    def ftcore_config_schema(self):
        """Add the ``diffusion:`` block."""
        from ftcore_diffusion.config import DiffusionArgs

        return DiffusionArgs

    @hookimpl
    def ftcore_model_claims(self, cfg):
        """The diffusion loss replaces the causal-LM loss."""
        from ftcore.claims import Claim, ModelPart

        return [Claim(ModelPart.LOSS_HEAD)]

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """Diffusion trains with bidirectional 4D masks: no RL trainer, no flash attention."""
        problems = []
        if cfg.rl:
            problems.append(("rl", f"diffusion training has no {cfg.rl} variant; remove rl"))
        if cfg.attn_implementation and "flash" in cfg.attn_implementation:
            problems.append(
                ("attn_implementation", "diffusion needs 4D attention masks: use sdpa or eager")
            )
        return problems

    @hookimpl
    def ftcore_post_model_load(self, cfg, model, tokenizer):
        """Resolve (or add) the mask token."""
        self.mask_token_id = resolve_mask_token(cfg.diffusion, tokenizer, model)
        self.special = special_ids(tokenizer)

    @hookimpl
    def ftcore_compute_loss(self, cfg, model, inputs, trainer):
        """The masked diffusion loss (importance weighted as configured)."""
        from ftcore_diffusion.loss import diffusion_loss

        loss, metrics = diffusion_loss(
            model, inputs, cfg.diffusion, self.mask_token_id, self.special
        )
        if model.training:
            for name, value in metrics.items():
                trainer.ftcore_record_metric(name, value)
        return loss

    @hookimpl
    def ftcore_callbacks(self, cfg, model):
        """Print samples every ``generation_interval`` steps (rank 0)."""
        if not cfg.diffusion.generate_samples:
            return None
        from ftcore_diffusion.samples import SampleCallback

        return [SampleCallback(cfg.diffusion, self)]

    @hookimpl
    def ftcore_post_trainer_create(self, cfg, trainer):
        """Keep the trainer: samples go to its trackers."""
        self.trainer = trainer

    @hookimpl
    def ftcore_inference_handler(self, cfg, model, tokenizer):
        """Decode by iterative unmasking; ``:complete N`` and ``:mask R`` prompt commands."""
        from ftcore_diffusion.samples import make_handler

        return make_handler(
            cfg.diffusion, model, tokenizer, resolve_mask_token(cfg.diffusion, tokenizer)
        )
