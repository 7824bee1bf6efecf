"""``kd_loss`` and ``ce_loss`` in the training logs."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class PartsLogger(TrainerCallback):
    """Adds the mean of each loss part since the last log to the training logs."""

    def __init__(self, parts: dict[str, list[Any]]):
        self.parts = parts

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        means = {
            name: round(float(sum(v.float() for v in values) / len(values)), 4)
            for name, values in self.parts.items()
            if values
        }
        for values in self.parts.values():
            values.clear()
        logs.update(means)
        # the trainer stored a copy of these logs just before calling the callbacks
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(means)
