"""The MoE kernel keys of the reference: ``use_scattermoe``, ``use_sonicmoe``, ``experts_implementation``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ExpertsImplementation = Literal[
    "eager", "grouped_mm", "batched_mm", "deepgemm", "scattermoe", "sonicmoe"
]


class MoEKernelsArgs(BaseModel):
    use_kernels: bool | None = Field(
        None,
        description="Accepted from Axolotl configs; ftcore chooses the experts kernel from "
        "use_scattermoe, use_sonicmoe or experts_implementation.",
    )
    use_scattermoe: bool | None = Field(
        None, description="ScatterMoE: grouped GEMMs over tokens sorted by expert (Triton)."
    )
    use_sonicmoe: bool | None = Field(
        None, description="SonicMoE through the sonic-moe package (Hopper GPUs or newer)."
    )
    experts_implementation: ExpertsImplementation | None = Field(
        None,
        description="The experts implementation transformers dispatches to (scattermoe and "
        "sonicmoe are the same as use_scattermoe and use_sonicmoe).",
    )
