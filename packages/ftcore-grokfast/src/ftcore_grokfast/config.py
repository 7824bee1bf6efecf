"""The ``grokfast_*`` config keys."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator


class GrokfastArgs(BaseModel):
    grokfast_alpha: float = Field(
        0.98,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="EMA momentum of the slow-gradient filter: mu = alpha * mu + (1 - alpha) * g.",
    )
    grokfast_lamb: float = Field(
        2.0,
        ge=0.0,
        allow_inf_nan=False,  # inf turns every filtered gradient into NaN
        description="Amplification of the slow gradient: g = g + lamb * mu.",
    )

    @model_validator(mode="before")
    @classmethod
    def _swapped_values(cls, data: object) -> object:
        # Axolotl's README example swaps the two values; say so instead of a bare range error.
        if isinstance(data, dict):
            alpha, lamb = data.get("grokfast_alpha"), data.get("grokfast_lamb")
            numbers = all(
                isinstance(value, int | float) and not isinstance(value, bool)
                for value in (alpha, lamb)
            )  # true/false are the core's to report
            if numbers and alpha >= 1 and 0 <= lamb < 1:
                raise ValueError(
                    f"grokfast_alpha is {alpha} and grokfast_lamb is {lamb}: the two look "
                    "swapped; alpha is the EMA momentum in [0, 1) (default 0.98), lamb the "
                    "amplification (default 2.0)"
                )
        return data
