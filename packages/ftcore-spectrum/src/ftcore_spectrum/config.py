"""The ``spectrum_*`` config keys."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SpectrumArgs(BaseModel):
    spectrum_top_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of the weight matrices of each module type to train, highest SNR first.",
    )
    spectrum_model_name: str | None = Field(
        None,
        description="Name the SNR results are cached under (default: `base_model`).",
    )
    spectrum_snr_file: str | None = Field(
        None,
        description="An existing Spectrum JSON (`{module: {snr, type}}`) to use instead of scanning.",
    )
    spectrum_unfreeze_embeddings: bool = Field(True, description="Also train the input embeddings.")
    spectrum_unfreeze_lm_head: bool = Field(True, description="Also train the output head.")
