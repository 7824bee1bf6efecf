"""Hook implementations of ftcore-cce (torch is imported only inside hooks)."""

from __future__ import annotations

import logging

from ftcore import hookimpl
from ftcore.claims import Claim, ModelPart

log = logging.getLogger("ftcore")


class CutCrossEntropyPlugin:
    """The supervised training loss from hidden states, through Cut Cross Entropy."""

    @hookimpl
    def ftcore_config_schema(self):
        """Add ``cut_cross_entropy`` (true by default: listing the plugin turns it on)."""
        from ftcore_cce.config import CutCrossEntropyArgs

        return CutCrossEntropyArgs

    @hookimpl
    def ftcore_model_claims(self, cfg):
        """Cut Cross Entropy replaces the loss head."""
        if cfg.cut_cross_entropy:
            return [Claim(ModelPart.LOSS_HEAD, key="cut_cross_entropy")]
        return None

    @hookimpl
    def ftcore_configure(self, cfg):
        """Say where the loss will not change: preference and RL losses read logits."""
        if cfg.cut_cross_entropy and cfg.rl:
            log.warning(
                "ftcore: cut_cross_entropy changes the supervised next-token loss only; "
                "rl: %s computes its loss from logits, which are still materialised",
                cfg.rl,
            )

    @hookimpl
    def ftcore_post_model_build(self, cfg, model):
        """Install the training forward that never builds the logits tensor."""
        if not cfg.cut_cross_entropy:
            return
        import torch

        from ftcore_cce.forward import SUPPORTED_MODEL_TYPES, install

        install(model)
        model_type = model.config.model_type
        if model_type not in SUPPORTED_MODEL_TYPES:
            log.warning(
                "ftcore: cut_cross_entropy uses its generic forward for model_type %s (tested "
                "families: %s)",
                model_type,
                ", ".join(SUPPORTED_MODEL_TYPES),
            )
        if not torch.cuda.is_available():
            log.info(
                "ftcore: cut_cross_entropy without CUDA uses its chunked reference loss (same "
                "values, no logits tensor, slower than the kernel)"
            )
