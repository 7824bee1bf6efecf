"""The keys this plugin adds to the config (top level, prefixed with the plugin name)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExampleArgs(BaseModel):
    example_freeze_embeddings: bool = Field(
        False, description="Freeze the input embeddings before training."
    )
    example_report: bool = Field(
        True, description="Log how many parameters are trainable once the model is loaded."
    )
