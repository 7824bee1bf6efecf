"""Which models the experts kernels reach, and switching a built model to one of them."""

from __future__ import annotations

from typing import Any

from ftcore.errors import FtcoreError

#: Families whose MoE blocks are tested equal to transformers' (outputs and gradients).
TESTED_MODEL_TYPES = (
    "deepseek_v2", "deepseek_v3", "ernie4_5_moe", "gemma4_text", "glm4_moe", "granitemoe",
    "hunyuan_v1_moe", "minimax_m2", "mixtral", "olmoe", "phimoe", "qwen2_moe", "qwen3_moe",
    "qwen3_next",
)  # fmt: skip


#: The experts implementations of this package; both route through the shared strategies.
KERNELS = ("scattermoe", "sonicmoe")


def is_experts_module(module: Any) -> bool:
    """Whether transformers dispatches ``module`` through its ExpertsInterface."""
    return hasattr(module, "is_concatenated") and hasattr(module, "has_gate")


def experts_modules(model: Any) -> list[Any]:
    """The experts modules transformers dispatches through its ExpertsInterface."""
    return [module for module in model.modules() if is_experts_module(module)]


def apply_experts_implementation(model: Any, name: str) -> int:
    """Switch ``model`` to experts implementation ``name``; returns how many blocks use it.

    With either kernel (``scattermoe``, ``sonicmoe``) the routers also compute through
    :mod:`ftcore_moe_kernels.routing`.
    """
    from ftcore_moe_kernels import experts, sonic
    from ftcore_moe_kernels.peft_factors import hand_over_factors
    from ftcore_moe_kernels.routing import install_routing

    model_type = getattr(model.config, "model_type", "?")
    modules = experts_modules(model)
    if not modules:
        raise FtcoreError(
            f"{type(model).__name__} (model_type {model_type}) has no experts that transformers "
            "dispatches through its ExpertsInterface; remove the moe-kernels keys for this model"
        )
    check = {
        experts.NAME: experts.unsupported_reason,
        sonic.NAME: (
            sonic.unsupported_reason
            if sonic.has_sonicmoe_package()
            else sonic.hub_unsupported_reason
        ),
    }
    if name in check:
        reasons = sorted({r for r in map(check[name], modules) if r})
        if reasons:
            raise FtcoreError(
                f"{name} does not support the experts of {model_type}: {'; '.join(reasons)}; "
                "remove the moe-kernels keys for this model"
            )
    if name in KERNELS:
        install_routing(model)
    model.set_experts_implementation(name)
    hand_over_factors(model, experts.NAME)
    return len(modules)
