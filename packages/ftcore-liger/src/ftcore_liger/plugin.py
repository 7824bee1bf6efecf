"""Hook implementations of ftcore-liger (torch and liger-kernel are imported only inside hooks)."""

from __future__ import annotations

import logging

from ftcore import hookimpl
from ftcore.claims import Claim, ModelPart

log = logging.getLogger("ftcore")

_CLAIMS = {
    "liger_rope": ModelPart.ROPE,
    "liger_rms_norm": ModelPart.RMSNORM,
    "liger_glu_activation": ModelPart.MLP_ACTIVATION,
    "liger_fused_linear_cross_entropy": ModelPart.LOSS_HEAD,
    "liger_cross_entropy": ModelPart.LOSS_HEAD,
}


class LigerPlugin:
    """Liger's Triton kernels, applied per model type to the built model."""

    @hookimpl
    def ftcore_config_schema(self):
        """Add the ``liger_*`` keys."""
        from ftcore_liger.config import LigerArgs

        return LigerArgs

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """One loss kernel at most; token scaling belongs to the fused linear cross entropy."""
        problems = []
        if cfg.liger_cross_entropy and cfg.liger_fused_linear_cross_entropy:
            problems.append(
                ("liger_cross_entropy", "choose one of liger_cross_entropy and "
                 "liger_fused_linear_cross_entropy (the fused one never builds the logits)")
            )  # fmt: skip
        if cfg.liger_use_token_scaling and not cfg.liger_fused_linear_cross_entropy:
            problems.append(
                ("liger_use_token_scaling", "needs liger_fused_linear_cross_entropy: true")
            )
        return problems

    @hookimpl
    def ftcore_model_claims(self, cfg):
        """RoPE, RMSNorm, the MLP activation and the loss head, as configured."""
        return [Claim(part, key=key) for key, part in _CLAIMS.items() if getattr(cfg, key)]

    @hookimpl
    def ftcore_configure(self, cfg):
        """A listed plugin with nothing turned on is reported, never a silent no-op."""
        from ftcore_liger.patching import requested

        if not requested(cfg):
            log.warning(
                "ftcore: the liger plugin is listed but no liger_* kernel is set to true; nothing "
                "will be patched (e.g. liger_rope, liger_rms_norm, liger_glu_activation, "
                "liger_fused_linear_cross_entropy)"
            )

    @hookimpl
    def ftcore_pre_model_load(self, cfg):
        """Fail before loading weights: no GPU, or a model type Liger cannot patch."""
        from ftcore_liger.patching import plan, requested

        if not requested(cfg):
            return
        import torch

        from ftcore.errors import FtcoreError
        from ftcore.modeling import load_model_config

        if not torch.cuda.is_available():
            raise FtcoreError(
                "liger: Liger's kernels are Triton kernels and need a CUDA GPU; remove the liger "
                "plugin to train without one"
            )
        plan(cfg, load_model_config(cfg).model_type)

    @hookimpl
    def ftcore_post_model_build(self, cfg, model):
        """Apply the kernels to the built model (its modules, and its forward for the loss)."""
        from ftcore_liger.patching import apply, requested

        if requested(cfg):
            apply(cfg, model)
