"""The ``liger_*`` keys (each off unless set, as in the reference)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LigerArgs(BaseModel):
    liger_rope: bool | None = Field(None, description="Liger's fused rotary position embedding.")
    liger_rms_norm: bool | None = Field(None, description="Liger's RMSNorm kernel.")
    liger_glu_activation: bool | None = Field(
        None, description="Liger's fused GLU MLP (SwiGLU, or GeGLU for the Gemma family)."
    )
    liger_layer_norm: bool | None = Field(
        None, description="Liger's LayerNorm kernel (models with LayerNorm: vision towers, ...)."
    )
    liger_fused_linear_cross_entropy: bool | None = Field(
        None,
        description="Liger's fused linear cross entropy: the training loss without materialising "
        "the logits.",
    )
    liger_cross_entropy: bool | None = Field(
        None,
        description="Liger's cross entropy kernel on the logits (process-wide: it replaces "
        "torch.nn.functional.cross_entropy).",
    )
    liger_use_token_scaling: bool | None = Field(
        None,
        description="Scale each token's loss by its predicted probability (detached); needs "
        "liger_fused_linear_cross_entropy.",
    )
