"""What an experts module's gate computes, for the kernels that fuse it (no Triton import here)."""

from __future__ import annotations

from typing import Any

import torch


def default_gate_activation(experts: Any) -> str | None:
    """``"silu"``, ``"gelu_tanh"``, ``"gelu"`` or ``"relu"`` when ``experts`` gates with
    transformers' default ``act(gate) * up`` (the gate is the first half of ``gate_up``) and that
    activation; ``None`` for any other gate (gpt-oss's clamped one, an override on the
    instance, ...) or activation."""
    try:
        from transformers.activations import GELUActivation, GELUTanh, SiLUActivation
        from transformers.integrations.moe import _default_apply_gate
    except ImportError:  # another transformers layout: the module's own gate
        return None
    gate = getattr(experts, "_apply_gate", None)
    if getattr(gate, "__func__", None) is not _default_apply_gate:  # also set on the instance
        return None
    act = getattr(experts, "act_fn", None)
    if isinstance(act, (SiLUActivation, torch.nn.SiLU)):
        return "silu"
    if isinstance(act, GELUTanh) or (isinstance(act, torch.nn.GELU) and act.approximate == "tanh"):
        return "gelu_tanh"
    if (isinstance(act, GELUActivation) and act.act is torch.nn.functional.gelu) or (
        isinstance(act, torch.nn.GELU) and act.approximate == "none"
    ):
        return "gelu"
    if isinstance(act, torch.nn.ReLU):
        return "relu"
    return None
