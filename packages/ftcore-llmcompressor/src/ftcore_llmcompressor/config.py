"""The ``llmcompressor:`` block."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LLMCompressorBlock(BaseModel):
    """``llmcompressor:`` settings: the recipe that keeps the model sparse, and how to save."""

    model_config = ConfigDict(extra="forbid")

    recipe: Any = Field(
        description="An LLM Compressor recipe: a mapping, YAML text, or the path of a YAML file."
    )
    save_compressed: bool = Field(
        False, description="Save in the compressed-tensors format (shrinks quantized weights)."
    )


class LLMCompressorArgs(BaseModel):
    llmcompressor: LLMCompressorBlock | None = Field(
        None, description="LLM Compressor settings (required when the plugin is active)."
    )
