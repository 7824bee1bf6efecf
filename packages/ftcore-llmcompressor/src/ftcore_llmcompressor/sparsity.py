"""Measuring and keeping N:M sparsity of weight matrices."""

from __future__ import annotations

from typing import Any

import torch


def sparse_linears(
    model: Any, pattern_ignore: tuple[str, ...] = ("lm_head",)
) -> dict[str, torch.nn.Module]:
    """Every ``nn.Linear`` (LoRA base layers included) except the ignored ones."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(part in name for part in pattern_ignore):
            if "lora_" in name:
                continue
            found[name] = module
    return found


def worst_group_zeros(weight: torch.Tensor, group: int = 4) -> int:
    """The fewest zeros found in any group of ``group`` consecutive weights of a row."""
    rows = weight.detach().reshape(-1, group)
    return int((rows == 0).sum(dim=1).min())


def zero_fraction(weight: torch.Tensor) -> float:
    return float((weight == 0).float().mean())


def masks_of(model: Any) -> dict[str, torch.Tensor]:
    """Where each sparse linear layer's weight is zero (before a LoRA merge fills it)."""
    return {name: (module.weight != 0) for name, module in sparse_linears(model).items()}


def apply_masks(model: Any, masks: dict[str, torch.Tensor]) -> None:
    """Zero again what the masks say is zero (after merging a dense LoRA delta)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            module = modules.get(key) or modules.get(name)
            if module is not None:
                module.weight.mul_(mask.to(module.weight.dtype))
