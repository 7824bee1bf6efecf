"""A mixin that routes the trainer's extension points through the plugin host.

It is mixed into whichever ``transformers.Trainer`` class runs (the core's, or one a plugin chose
through ``ftcore_trainer_class``), so ``ftcore_compute_loss``, ``ftcore_create_optimizer``,
``ftcore_create_lr_scheduler``, plugins' metrics (``ftcore_record_metric``), complete-checkpoint
markers and the stop at a diverged (NaN) run work with every trainer.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError
from ftcore.training import checkpoints


class FtcoreTrainerMixin:
    """Plugin hooks and trustworthy checkpoints for a ``transformers.Trainer`` subclass."""

    ftcore_cfg: Any = None
    ftcore_host: Any = None
    ftcore_save_total_limit: int | None = None
    ftcore_eval_collator: Any = None
    ftcore_last_loss: Any = None  # the last micro-batch's loss, for plugins that need it
    ftcore_step_metrics: dict[str, list[Any]] | None = None  # see ftcore_record_metric
    ftcore_last_finite_step: int = 0  # the step of the last log without NaN (_stop_if_diverged)

    def ftcore_record_metric(self, name: str, value: Any) -> None:
        """Report a training metric of the current micro-batch (a float or a 0-d tensor).

        Its mean since the last log is logged with the loss, so it reaches the console, the
        trackers and ``trainer_state.json`` like the loss does. For plugins' loss parts and stats.
        """
        if self.ftcore_step_metrics is None:
            self.ftcore_step_metrics = {}
        self.ftcore_step_metrics.setdefault(name, []).append(value)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self.ftcore_step_metrics:
            for name, values in self.ftcore_step_metrics.items():
                logs[name] = sum(float(value) for value in values) / len(values)
            self.ftcore_step_metrics = None
        super().log(logs, *args, **kwargs)
        self._stop_if_diverged(logs)

    def _stop_if_diverged(self, logs: dict[str, float]) -> None:
        """Stop at a NaN or infinite loss or gradient norm: the weights are lost, and saving them
        as the model would hide it. fp16 is left alone: its loss scaler skips such steps.

        Checkpoints saved since the last finite log lose their completion marker, so that
        ``resume_from_checkpoint: auto`` takes the newest one from before."""
        if self.args.fp16 or "loss" not in logs:
            return
        bad = [
            (name, value)
            for name in ("loss", "grad_norm")
            if isinstance(value := logs.get(name), int | float) and not math.isfinite(value)
        ]
        if not bad:
            self.ftcore_last_finite_step = self.state.global_step
            return
        last_good = self.ftcore_last_finite_step
        if self.args.should_save:
            for step, folder in checkpoints.checkpoints(Path(self.args.output_dir)):
                if step > last_good:
                    checkpoints.unmark(folder)
        name, value = bad[0]
        raise FtcoreError(
            f"training diverged at step {self.state.global_step}: {name} is {value}, so the "
            "weights are no longer numbers and are not saved (nor are the checkpoints after step "
            f"{last_good}, the last finite log, resumed). Lower learning_rate, or look for rows "
            "with no trained token (a prompt longer than sequence_len)"
        )

    def get_eval_dataloader(self, eval_dataset=None):
        if self.ftcore_eval_collator in (None, self.data_collator):
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.ftcore_eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.ftcore_host.compute_loss(self.ftcore_cfg, model, inputs, self)
        if loss is None:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            self.ftcore_last_loss = (result[0] if return_outputs else result).detach()
            return result
        self.ftcore_last_loss = loss.detach()
        if (
            self.model.training
            and self.model_accepts_loss_kwargs
            and num_items_in_batch is not None
        ):
            # The trainer leaves accumulation scaling to losses that see num_items_in_batch; a
            # plugin's loss is a micro-batch mean, so scale it here.
            loss = loss / self.current_gradient_accumulation_steps
        # Evaluation asks for outputs it can slice; a dict with only the loss gives it none to keep.
        return (loss, {"loss": loss}) if return_outputs else loss

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            chosen = self.ftcore_host.create_optimizer(self.ftcore_cfg, model or self.model, self)
            if chosen is not None:
                self.optimizer = chosen
                return chosen
        return super().create_optimizer(model)

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            chosen = self.ftcore_host.create_lr_scheduler(
                self.ftcore_cfg, self, optimizer or self.optimizer, num_training_steps
            )
            if chosen is not None:
                self.lr_scheduler = chosen
                return chosen
        return super().create_scheduler(num_training_steps, optimizer)

    def _save_checkpoint(self, model, trial):
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            checkpoints.unmark(folder)  # a folder of the same name is being written over
        try:
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as error:
            failure = checkpoints.write_failure(folder, error) if self.args.should_save else None
            if failure is None:
                raise
            raise failure from error
        except KeyboardInterrupt:  # Ctrl-C in the middle of the save: no partial folder stays
            if self.args.should_save:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        self.accelerator.wait_for_everyone()  # every rank's files are written before the marker
        if self.args.should_save:
            checkpoints.mark_complete(folder, self.state.global_step)
            checkpoints.rotate(run_dir, self.ftcore_save_total_limit)


def compose_trainer_class(base: type) -> type:
    """``base`` with :class:`FtcoreTrainerMixin` in front, keeping ``base``'s name for logs."""
    return type(f"Ftcore{base.__name__}", (FtcoreTrainerMixin, base), {})
