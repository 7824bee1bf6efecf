"""The ``scattermoe`` experts implementation, registered in transformers' ExpertsInterface.

Every MoE family whose experts class transformers decorates with ``use_experts_implementation``
(gate and up projections concatenated in ``gate_up_proj [E, 2I, H]``, ``down_proj [E, H, I]``, no
bias) dispatches its experts call here once the model's experts implementation is ``scattermoe``.
The router stays the model's own: this function receives its ``top_k_index`` and ``top_k_weights``.

The token-expert pairs are sorted by expert; the first grouped linear reads each token's hidden
state in place (gathered inside the kernel), the family's gate (SwiGLU and GEGLU fused in one
kernel, others through the module's ``_apply_gate``) runs on the sorted rows, the second grouped
linear projects back, and each token's k rows are summed with the router weights in float32
(:mod:`ftcore_moe_kernels.combine`). Nothing is scattered with atomic adds, in either pass.

LoRA on the expert parameters (peft's ``target_parameters``) runs inside the grouped kernels: when
peft keeps an adapter's low-rank factors (``delta[e] = lhs[e] @ rhs[e]``), each projection adds
``scaling * (x @ rhs[e].T) @ lhs[e].T`` in its own kernel's epilogue
(:mod:`ftcore_moe_kernels.grouped_lora`) and the per-expert delta weights are never formed; peft's
wrappers hand the factors over without folding them first (:mod:`ftcore_moe_kernels.peft_factors`).
Otherwise (several adapters at once) peft's merged weight is used as it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ftcore.errors import FtcoreError
from ftcore_moe_kernels.combine import combine_rows
from ftcore_moe_kernels.grouped import grouped_linear, use_triton
from ftcore_moe_kernels.grouped_lora import grouped_lora_linear
from ftcore_moe_kernels.peft_factors import lora_factors

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
    return quantized_reason(experts)


def quantized_reason(experts: Any) -> str | None:
    """Why the kernels cannot read the weights of ``experts`` (FP8 and other quantized stacks,
    which carry scales the kernels would ignore), or ``None``."""
    dtype = experts.gate_up_proj.dtype
    if dtype in (torch.float32, torch.bfloat16, torch.float16):
        return None
    return f"{type(experts).__name__} (quantized {dtype} weights; load the model in bf16 instead)"


class ExpertOrder(NamedTuple):
    """The token-expert pairs of ``top_k_index [T, k]`` sorted by expert (expert ``e`` owns the
    sorted rows ``offsets[e]:offsets[e + 1]``)."""

    source: torch.Tensor  #: [T * k] the token each sorted row reads
    pairs: torch.Tensor  #: [T * k] the pair (``token * k + slot``) of each sorted row
    rows: torch.Tensor  #: [T, k] the sorted row of each pair: the inverse of ``pairs``
    offsets: torch.Tensor  #: [E + 1]


def sort_by_expert(top_k_index: torch.Tensor, num_experts: int) -> ExpertOrder:
    """The :class:`ExpertOrder` of ``top_k_index`` (computed on the device, no host sync)."""
    flat = top_k_index.reshape(-1)
    pairs = torch.argsort(flat, stable=True)
    rows = torch.empty_like(pairs)
    rows[pairs] = torch.arange(pairs.numel(), device=pairs.device)
    # scatter_add, not bincount: bincount sizes its output from max() on the host (a sync)
    counts = flat.new_zeros(num_experts).scatter_add_(0, flat, torch.ones_like(flat))
    offsets = torch.zeros(num_experts + 1, dtype=torch.int64, device=flat.device)
    offsets[1:] = torch.cumsum(counts, 0)
    top_k = top_k_index.shape[-1]
    return ExpertOrder(pairs // top_k, pairs, rows.view(-1, top_k), offsets)


def _base_and_lora(module: Any, name: str) -> tuple[torch.Tensor, Any]:
    """Parameter ``name`` without LoRA and its LoRA factors (handed over, or peft's proxy), or
    ``(weight, None)``."""
    from torch.nn.utils import parametrize

    if (factors := lora_factors(module, name)) is not None:
        weight = getattr(module, name)
        if (
            factors.lhs.shape[:-1] != weight.shape[:-1]
            or factors.rhs.shape[::2] != weight.shape[::2]
        ):
            raise RuntimeError(
                f"peft's LoRA factors of {name} do not fit its shape {tuple(weight.shape)}"
            )
        return weight, factors
    if parametrize.is_parametrized(module, name):
        chain = module.parametrizations[name]
        proxy = chain[0]
        factors = all(hasattr(proxy, attribute) for attribute in ("lhs", "rhs", "scaling"))
        if len(chain) == 1 and factors and proxy.lhs.shape[:-1] == chain.original.shape[:-1]:
            return chain.original, proxy
    return getattr(module, name), None


def _project(weight: torch.Tensor, lora: Any, x: torch.Tensor, order: ExpertOrder,
             gather: bool) -> torch.Tensor:  # fmt: skip
    """``x @ weight[e].T`` per expert, plus the LoRA term when ``lora`` holds peft's factors;
    ``gather``: ``x`` is in token order and each sorted row reads its token's row."""
    source, copies = (order.source, order.rows) if gather else (None, None)
    if lora is None:
        return grouped_linear(x, weight, order.offsets, source, copies)
    return grouped_lora_linear(x, weight, lora.rhs, lora.lhs, lora.scaling, order.offsets, source,
                               copies)  # fmt: skip


def scattermoe_experts_forward(
    self: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The experts of one MoE block over ``hidden_states [S, H]`` (see the module docstring)."""
    gate_up_weight, gate_up_lora = _base_and_lora(self, "gate_up_proj")
    order = sort_by_expert(top_k_index, gate_up_weight.shape[0])
    gate_up = _project(gate_up_weight, gate_up_lora, hidden_states, order, gather=True)
    activated = _gate(self, gate_up)
    out = _project(*_base_and_lora(self, "down_proj"), activated, order, gather=False)
    weights = top_k_weights.reshape(order.rows.shape)
    return combine_rows(out, order.rows, weights).to(hidden_states.dtype)


def _gate(experts: Any, gate_up: torch.Tensor) -> torch.Tensor:
    """The family's gate on the sorted rows: fused by Triton where it can be."""
    if use_triton(gate_up):
        from ftcore_moe_kernels.activation import gated_activation  # Triton: Linux only

        return gated_activation(experts, gate_up)
    return experts._apply_gate(gate_up)


def check_scattermoe() -> None:
    """An error, before the model loads, where a CUDA GPU would run the Triton kernels and Triton
    is missing (it is a dependency on Linux only)."""
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("triton") is None:
        raise FtcoreError(
            "use_scattermoe runs Triton kernels on CUDA GPUs, and triton is not installed: "
            "install it (pip install triton; on Windows, triton-windows), or remove use_scattermoe"
        )


def register() -> None:
    """Make ``scattermoe`` a valid ``experts_implementation`` in transformers."""
    from transformers.integrations.moe import ExpertsInterface

    ExpertsInterface.register(NAME, scattermoe_experts_forward)
