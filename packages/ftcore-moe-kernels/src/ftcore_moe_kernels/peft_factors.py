"""peft's expert LoRA factors, handed to the scattermoe kernels without peft's fold.

On every forward, peft's ``ParamWrapper`` (``target_parameters`` LoRA) registers a parametrization
that holds the adapter's factors, and torch checks it by folding ``W + scaling * lhs @ rhs`` once:
a temporary the size of the expert stack (805 MB for one Qwen3-30B-A3B layer's ``gate_up_proj`` in
bf16), read and written for nothing, since the scattermoe kernels take the factors.
:func:`hand_over_factors` marks the wrappers around a model's experts: while those experts dispatch
to the marked implementation, a marked wrapper leaves its factors where :func:`lora_factors` finds
them instead, and registers nothing. Unmarked wrappers, other implementations, several adapters
and low-precision weights take peft's own path.

The mark is a string in the wrapper's ``__dict__`` (it survives ``copy.deepcopy`` and pickling);
the wrapper class's ``_activate_lora`` is wrapped once, and reads it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

from ftcore_moe_kernels.models import is_experts_module

_FACTORS = "_ftcore_lora_factors"
_MARK = "_ftcore_factors_for"
_COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class LoraFactors(NamedTuple):
    """``delta[e] = scaling * lhs[e] @ rhs[e]``: ``lhs`` [E, N, R] and ``rhs`` [E, R, K]."""

    lhs: torch.Tensor
    rhs: torch.Tensor
    scaling: float


def lora_factors(experts: Any, name: str) -> LoraFactors | None:
    """The factors a wrapper handed over for parameter ``name`` during this forward, or ``None``."""
    return experts.__dict__.get(_FACTORS, {}).get(name)


def hand_over_factors(model: Any, implementation: str) -> int:
    """Mark every peft ``ParamWrapper`` around an experts module of ``model`` to hand over its
    factors while the experts dispatch to ``implementation``; returns how many wrappers."""
    wrappers = [module for module in model.modules() if _wraps_experts(module)]
    for wrapper in wrappers:
        _wrap_activation(type(wrapper))
        wrapper.__dict__[_MARK] = implementation
    return len(wrappers)


def _wraps_experts(module: Any) -> bool:
    wrapper = all(hasattr(module, name) for name in ("get_delta_factors", "parameter_name"))
    return wrapper and is_experts_module(module.get_base_layer())


def _wrap_activation(wrapper_class: type) -> None:
    """Make ``wrapper_class._activate_lora`` hand over the factors on marked instances (once)."""
    if "_ftcore_peft_activate_lora" in wrapper_class.__dict__:
        return
    peft_activation = wrapper_class._activate_lora

    @contextmanager
    def activate(self: Any, active_adapters: list[str]):
        adapters = [name for name in active_adapters if name in self.lora_A]
        if not _hands_over(self, adapters):
            with peft_activation(self, active_adapters):
                yield
            return
        handed = self.get_base_layer().__dict__.setdefault(_FACTORS, {})
        name = self.parameter_name
        previous = handed.get(name)  # a nested call of the same wrapper keeps the outer's
        handed[name] = LoraFactors(*self.get_delta_factors(adapters[0]))
        try:
            yield
        finally:
            if previous is None:
                del handed[name]
            else:
                handed[name] = previous

    wrapper_class._ftcore_peft_activate_lora = peft_activation
    wrapper_class._activate_lora = activate


def _hands_over(wrapper: Any, adapters: list[str]) -> bool:
    implementation = wrapper.__dict__.get(_MARK)
    config = getattr(wrapper.get_base_layer(), "config", None)
    return (
        implementation is not None
        and getattr(config, "_experts_implementation", None) == implementation
        and len(adapters) == 1
        and wrapper.num_experts > 1
        and wrapper.get_param().dtype in _COMPUTE_DTYPES
    )
