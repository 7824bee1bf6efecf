"""A Trainer that reports the diffusion metrics next to the loss."""

from __future__ import annotations

from typing import Any

from transformers import Trainer


class DiffusionTrainer(Trainer):
    ftcore_diffusion_metrics: list[dict[str, float]]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ftcore_diffusion_metrics = []

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self.ftcore_diffusion_metrics:
            collected = self.ftcore_diffusion_metrics
            for key in collected[0]:
                logs[key] = sum(m[key] for m in collected) / len(collected)
            self.ftcore_diffusion_metrics = []
        super().log(logs, *args, **kwargs)
