"""Hook implementations of ftcore-moe-kernels (torch and triton are imported only inside hooks)."""

from __future__ import annotations

import logging
from typing import Any

from ftcore import hookimpl
from ftcore.claims import Claim, ModelPart
from ftcore.dist import is_main_process
from ftcore_moe_kernels.models import KERNELS

log = logging.getLogger("ftcore")


def chosen_implementation(cfg: Any) -> str | None:
    """The experts implementation the config asks for (``None``: the model's default)."""
    if cfg.use_scattermoe:
        return "scattermoe"
    if cfg.use_sonicmoe:
        return "sonicmoe"
    return cfg.experts_implementation


class MoEKernelsPlugin:
    """Expert kernels dispatched through transformers' ExpertsInterface."""

    @hookimpl
    def ftcore_config_schema(self):
        """Add ``use_scattermoe``, ``use_sonicmoe``, ``experts_implementation`` (and ``use_kernels``)."""
        from ftcore_moe_kernels.config import MoEKernelsArgs

        return MoEKernelsArgs

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """One kernel at a time, no other experts implementation beside it, and no kernel both
        asked for and turned off."""
        problems = []
        if cfg.use_scattermoe and cfg.use_sonicmoe:
            problems.append(("use_sonicmoe", "use_scattermoe and use_sonicmoe exclude each other"))
        kernel = "scattermoe" if cfg.use_scattermoe else "sonicmoe" if cfg.use_sonicmoe else None
        if kernel and cfg.experts_implementation not in (None, kernel):
            problems.append(
                ("experts_implementation", f"{cfg.experts_implementation} conflicts with "
                 f"use_{kernel}; remove experts_implementation")
            )  # fmt: skip
        for name in KERNELS:
            if cfg.experts_implementation == name and getattr(cfg, f"use_{name}") is False:
                problems.append(
                    (f"use_{name}", f"use_{name}: false conflicts with experts_implementation: "
                     f"{name}; remove one of them")
                )  # fmt: skip
        return problems

    @hookimpl
    def ftcore_model_claims(self, cfg):
        """A custom kernel replaces the MoE experts."""
        if chosen_implementation(cfg) in KERNELS:
            key = (
                "use_scattermoe"
                if cfg.use_scattermoe
                else "use_sonicmoe"
                if cfg.use_sonicmoe
                else None
            )
            return [Claim(ModelPart.MOE_EXPERTS, key=key)]
        return None

    @hookimpl
    def ftcore_configure(self, cfg):
        """``use_kernels`` changes nothing in ftcore: say so instead of ignoring it."""
        if cfg.use_kernels:
            log.warning(
                "ftcore: use_kernels has no effect; the experts kernel comes from use_scattermoe, "
                "use_sonicmoe or experts_implementation"
            )

    @hookimpl
    def ftcore_pre_model_load(self, cfg):
        """Register ``scattermoe``; check that SonicMoE or DeepGEMM can run here before loading
        weights (and say that sonic-moe's first step compiles its kernels for minutes)."""
        name = chosen_implementation(cfg)
        if name == "scattermoe":
            from ftcore_moe_kernels.experts import check_scattermoe, register

            check_scattermoe()
            register()
        elif name == "sonicmoe":
            from ftcore_moe_kernels import sonic

            sonic.check_sonicmoe()
            sonic.register()
            if sonic.has_sonicmoe_package() and is_main_process():
                log.warning(sonic.first_step_notice())
        elif name == "deepgemm":
            from ftcore_moe_kernels.deepgemm import check_deepgemm

            check_deepgemm()

    @hookimpl
    def ftcore_post_model_build(self, cfg, model):
        """Dispatch the model's experts to the chosen implementation (an error if it has none)."""
        name = chosen_implementation(cfg)
        if name is None:
            return
        from ftcore_moe_kernels.models import apply_experts_implementation

        apply_experts_implementation(model, name)

    @hookimpl
    def ftcore_post_adapter_load(self, cfg, model):
        """Let peft's expert LoRA wrappers hand their factors to scattermoe without folding them."""
        if chosen_implementation(cfg) != "scattermoe":
            return
        from ftcore_moe_kernels.peft_factors import hand_over_factors

        hand_over_factors(model, "scattermoe")
