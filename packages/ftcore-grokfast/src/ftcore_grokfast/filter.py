"""The Grokfast EMA gradient filter (Lee et al. 2024, "Grokfast: Accelerated Grokking by
Amplifying Slow Gradients"), on an optimizer's parameters.

For every parameter with a gradient, before the optimizer step::

    mu <- g                            on the first step
    mu <- alpha * mu + (1 - alpha) * g on later steps
    g  <- g + lamb * mu

The filter state ``mu`` lives in the optimizer's own per-parameter state (key ``grokfast_ema``), so
it is saved in every checkpoint with the optimizer and restored on resume, bit for bit.
"""

from __future__ import annotations

from typing import Any

STATE_KEY = "grokfast_ema"


class GradFilterEMA:
    """Applies the filter to the gradients of an optimizer's parameters."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self.lamb = lamb
        # Buffers of the first step: optimizers such as AdamW initialise their state only when it
        # is empty, so a buffer joins the optimizer state after the optimizer's first step.
        self._pending: dict[int, Any] = {}

    def filter_gradients(self, optimizer: Any) -> None:
        """Update ``mu`` from the current gradients and amplify them. Call once per update.

        A step whose gradients are not finite (fp16 overflow: the scaler will skip it) leaves the
        filter untouched, so an inf never enters ``mu``.
        """
        import torch

        grads = [p.grad for p in _parameters(optimizer) if p.grad is not None]
        if grads and not all(torch.isfinite(g).all() for g in grads):
            return
        for param in _parameters(optimizer):
            if param.grad is None:
                continue
            grad = param.grad
            ema = optimizer.state[param].get(STATE_KEY) if param in optimizer.state else None
            if ema is None:
                ema = self._pending.get(id(param))
            if ema is None:
                ema = grad.detach().clone()
                self._pending[id(param)] = ema
            else:
                ema.mul_(self.alpha).add_(grad.detach(), alpha=1.0 - self.alpha)
            grad.add_(ema, alpha=self.lamb)

    def after_step(self, optimizer: Any, skipped: bool = False) -> None:
        """Move first-step buffers into the optimizer state (call after ``optimizer.step()``).

        :param skipped: the optimizer did not step (fp16 overflow); its state may still be empty,
            and joining it now would stop optimizers such as AdamW from initialising their own.
        """
        if not self._pending or skipped:
            return
        for param in _parameters(optimizer):
            ema = self._pending.pop(id(param), None)
            if ema is not None:
                optimizer.state[param][STATE_KEY] = ema
        self._pending.clear()


def _parameters(optimizer: Any):
    for group in optimizer.param_groups:
        yield from group["params"]
