"""Flushes the completion buffer into SwanLab tables while training runs."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class CompletionTableCallback(TrainerCallback):
    """Every ``interval`` steps, and at the end of training, log the buffered completions."""

    def __init__(self, buffer: Any, interval: int):
        self.buffer = buffer
        self.interval = interval

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and state.global_step % self.interval == 0:
            self.buffer.flush(state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.buffer.flush(state.global_step)
