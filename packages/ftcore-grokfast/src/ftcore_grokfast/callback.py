"""Runs the filter at the right moment of a transformers training step."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ftcore_grokfast.filter import GradFilterEMA


class GrokfastCallback(TrainerCallback):
    """After gradient clipping and before each optimizer step (once per update, whatever the
    gradient accumulation), filter the gradients."""

    def __init__(self, alpha: float, lamb: float):
        self.filter = GradFilterEMA(alpha, lamb)

    def on_pre_optimizer_step(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any
    ):
        self.filter.filter_gradients(_unwrap(optimizer))

    def on_optimizer_step(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any
    ):
        skipped = bool(getattr(optimizer, "step_was_skipped", False))  # accelerate's fp16 scaler
        self.filter.after_step(_unwrap(optimizer), skipped=skipped)


def _unwrap(optimizer: Any) -> Any:
    """accelerate wraps the optimizer; the parameter state lives in the wrapped one."""
    return getattr(optimizer, "optimizer", optimizer)
