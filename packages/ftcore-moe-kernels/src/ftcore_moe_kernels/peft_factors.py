"""peft's expert LoRA factors, handed to the scattermoe kernels without peft's fold.

On every forward, peft's ``ParamWrapper`` (``target_parameters`` LoRA) registers a parametrization
that holds the adapter's factors, and torch checks it by folding ``W + scaling * lhs @ rhs`` once:
a temporary the size of the expert stack (805 MB for one Qwen3-30B-A3B layer's ``gate_up_proj`` in
bf16), read and written for nothing, since the scattermoe kernels take the factors. While an
experts module dispatches to scattermoe, :func:`hand_over_factors` makes the wrappers around it
leave the factors where :func:`lora_factors` finds them instead, and register nothing. Under any
other implementation, with several adapters, or with low-precision weights, peft's own path runs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

_FACTORS = "_ftcore_lora_factors"
_COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class LoraFactors(NamedTuple):
    """``delta[e] = scaling * lhs[e] @ rhs[e]``: ``lhs`` [E, N, R] and ``rhs`` [E, R, K]."""

    lhs: torch.Tensor
    rhs: torch.Tensor
    scaling: float


def lora_factors(experts: Any, name: str) -> LoraFactors | None:
    """The factors a wrapper handed over for parameter ``name`` during this forward, or ``None``."""
    return experts.__dict__.get(_FACTORS, {}).get(name)


def hand_over_factors(model: Any, takes_factors: Callable[[Any], bool]) -> int:
    """Make every peft ``ParamWrapper`` around an experts module for which ``takes_factors`` is
    true (checked on each forward) hand over its factors; returns how many wrappers."""
    wrappers = [module for module in model.modules() if _wraps_experts(module)]
    for wrapper in wrappers:  # an instance attribute: peft's method stays as it is elsewhere
        wrapper._activate_lora = _activation(wrapper, takes_factors)
    return len(wrappers)


def _wraps_experts(module: Any) -> bool:
    if not all(hasattr(module, name) for name in ("get_delta_factors", "parameter_name")):
        return False
    base = module.get_base_layer()
    return hasattr(base, "is_concatenated") and hasattr(base, "has_gate")


def _activation(wrapper: Any, takes_factors: Callable[[Any], bool]):
    peft_activation = type(wrapper)._activate_lora.__get__(wrapper)

    @contextmanager
    def activate(active_adapters: list[str]):
        experts = wrapper.get_base_layer()
        adapters = [name for name in active_adapters if name in wrapper.lora_A]
        if (
            len(adapters) != 1
            or wrapper.num_experts < 2
            or wrapper.get_param().dtype not in _COMPUTE_DTYPES
            or not takes_factors(experts)
        ):
            with peft_activation(active_adapters):
                yield
            return
        handed = experts.__dict__.setdefault(_FACTORS, {})
        handed[wrapper.parameter_name] = LoraFactors(*wrapper.get_delta_factors(adapters[0]))
        try:
            yield
        finally:
            del handed[wrapper.parameter_name]

    return activate
