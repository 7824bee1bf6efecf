"""The ``cut_cross_entropy`` key."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CutCrossEntropyArgs(BaseModel):
    cut_cross_entropy: bool = Field(
        True,
        description="Compute the training loss from the hidden states and the lm_head weight with "
        "Cut Cross Entropy, never materialising the logits (on by listing the plugin).",
    )
