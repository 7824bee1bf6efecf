"""Drive the LLM Compressor session from the trainer's callbacks, in the order it enforces.

Per optimizer step (once, whatever the gradient accumulation): ``batch_start`` ->
``loss_calculated`` -> ``optim_pre_step`` -> (the optimizer steps) -> ``optim_post_step`` (where a
``ConstantPruningModifier`` multiplies the weights by their masks) -> ``batch_end``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback


class SparseTrainingCallback(TrainerCallback):
    def __init__(self, recipe: Any):
        self.recipe = recipe
        self.trainer: Any = None  # set once the trainer exists (ftcore_post_trainer_create)

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        **kwargs: Any,
    ):
        from llmcompressor import active_session

        self.trainer.accelerator.wait_for_everyone()
        session = active_session()
        session.reset()
        session.initialize(
            recipe=self.recipe, model=self.trainer.model, optimizer=optimizer, start=state.epoch
        )
        self.trainer.accelerator.wait_for_everyone()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any):
        from llmcompressor.core import callbacks

        loss = getattr(self.trainer, "ftcore_last_loss", None)
        callbacks.batch_start()
        callbacks.loss_calculated(loss=loss if loss is not None else torch.zeros(()))
        callbacks.optim_pre_step()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any):
        from llmcompressor.core import callbacks

        callbacks.optim_post_step()
        callbacks.batch_end()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
        from llmcompressor import active_session

        active_session().finalize()
