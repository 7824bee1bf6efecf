"""Comparing a patched model with the original: its loss and every parameter's gradient."""

from __future__ import annotations

from typing import Any


def loss_and_gradients(
    model: Any, inputs: dict[str, Any], **extra: Any
) -> tuple[Any, dict[str, Any]]:
    """One forward and backward: the model's output and a copy of each parameter's gradient."""
    model.zero_grad()
    output = model(**inputs, **extra)
    output.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return output, grads


def relative_error(got: Any, expected: Any) -> float:
    """``|got - expected| / |expected|`` in the L2 norm, in float32 (bf16 comparisons)."""
    difference = (got.float() - expected.float()).norm()
    return (difference / expected.float().norm().clamp_min(1e-12)).item()
