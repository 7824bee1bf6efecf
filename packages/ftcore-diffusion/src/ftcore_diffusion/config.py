"""The nested ``diffusion:`` block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DiffusionBlock(BaseModel):
    """``diffusion:`` settings of masked diffusion training and sampling."""

    model_config = ConfigDict(extra="forbid")

    noise_schedule: Literal["linear", "cosine"] = Field(
        "linear", description="How the sampled time t becomes a mask probability."
    )
    min_mask_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Lowest mask probability.")
    max_mask_ratio: float = Field(
        0.9, gt=0.0, le=1.0, description="Highest mask probability (0 would mask nothing)."
    )
    num_diffusion_steps: int = Field(128, gt=0, description="Default decoding steps at inference.")
    eps: float = Field(
        1e-3, ge=0.0, lt=1.0, description="Floor of the mask probability before bounds."
    )
    importance_weighting: bool = Field(True, description="Weight each masked token's loss by 1/p.")
    mask_token_str: str | None = Field(
        None, description="The mask token (added to the vocabulary when missing)."
    )
    mask_token_id: int | None = Field(None, ge=0, description="An existing token id to mask with.")
    generate_samples: bool = Field(True, description="Print samples during training.")
    generation_interval: int = Field(100, gt=0, description="Steps between samples.")
    num_generation_samples: int = Field(3, gt=0, description="Samples each time.")
    generation_steps: int = Field(128, gt=0, description="Decoding steps of the samples.")
    generation_temperature: float = Field(0.0, ge=0.0, description="0 decodes greedily.")
    generation_max_length: int = Field(100, gt=0, description="Longest sample, in tokens.")

    @model_validator(mode="after")
    def _bounds(self) -> DiffusionBlock:
        if self.min_mask_ratio > self.max_mask_ratio:
            raise ValueError(
                f"min_mask_ratio {self.min_mask_ratio} is above max_mask_ratio {self.max_mask_ratio}"
            )
        return self


class DiffusionArgs(BaseModel):
    diffusion: DiffusionBlock = Field(
        default_factory=DiffusionBlock, description="Masked diffusion settings."
    )
