"""The real work, importable and testable without ftcore."""

from __future__ import annotations

from typing import Any


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of a torch module."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def freeze_input_embeddings(model: Any) -> int:
    """Stop gradients to the input embeddings; return how many parameters were frozen."""
    embeddings = model.get_input_embeddings()
    frozen = 0
    for parameter in embeddings.parameters():
        if parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen
