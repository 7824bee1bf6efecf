"""The ``scattermoe`` experts implementation, registered in transformers' ExpertsInterface.

Every MoE family whose experts class transformers decorates with ``use_experts_implementation``
(gate and up projections concatenated in ``gate_up_proj [E, 2I, H]``, ``down_proj [E, H, I]``, no
bias) dispatches its experts call here once the model's experts implementation is ``scattermoe``.
The router stays the model's own: this function receives its ``top_k_index`` and ``top_k_weights``.

The token-expert pairs are sorted by expert; the first grouped linear reads each token's hidden
state in place (gathered inside the kernel), the family's gate (``_apply_gate``: SwiGLU, GEGLU,
...) runs on the sorted rows, the second grouped linear projects back, and the weighted rows are
summed into their tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from ftcore_moe_kernels.grouped import grouped_linear

NAME = "scattermoe"


def unsupported_reason(experts: Any) -> str | None:
    """Why an experts module cannot run ``scattermoe``, or ``None``."""
    layout = {
        "has_gate": getattr(experts, "has_gate", True),
        "has_bias": getattr(experts, "has_bias", False),
        "is_transposed": getattr(experts, "is_transposed", False),
        "is_concatenated": getattr(experts, "is_concatenated", True),
    }
    wanted = {"has_gate": True, "has_bias": False, "is_transposed": False, "is_concatenated": True}
    different = [f"{key}={value}" for key, value in layout.items() if value != wanted[key]]
    if different or not hasattr(experts, "gate_up_proj") or not hasattr(experts, "down_proj"):
        return f"{type(experts).__name__} ({', '.join(different) or 'no gate_up_proj/down_proj'})"
    return None


def sort_by_expert(top_k_index: torch.Tensor, num_experts: int):
    """The token of each expert-sorted slot, each slot's place in ``top_k``, and expert offsets."""
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=num_experts)
    offsets = torch.zeros(num_experts + 1, dtype=torch.int64, device=flat.device)
    offsets[1:] = torch.cumsum(counts, 0)
    return order // top_k_index.shape[-1], order, offsets


def scattermoe_experts_forward(
    self: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The experts of one MoE block over ``hidden_states [S, H]`` (see the module docstring)."""
    num_experts = self.gate_up_proj.shape[0]
    tokens, slots, offsets = sort_by_expert(top_k_index, num_experts)
    gate_up = grouped_linear(hidden_states, self.gate_up_proj, offsets, tokens)
    activated = self._apply_gate(gate_up)
    out = grouped_linear(activated, self.down_proj, offsets)
    out = out * top_k_weights.reshape(-1)[slots, None].to(out.dtype)
    final = torch.zeros_like(hidden_states)
    return final.index_add_(0, tokens, out.to(final.dtype))


def register() -> None:
    """Make ``scattermoe`` a valid ``experts_implementation`` in transformers."""
    from transformers.integrations.moe import ExpertsInterface

    ExpertsInterface.register(NAME, scattermoe_experts_forward)
