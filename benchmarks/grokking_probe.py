"""A local ftcore plugin for benchmarks: measures accuracy on held-out modular-addition pairs.

Activated as ``plugins: [benchmarks.grokking_probe]`` (run from the repository root). Every
``PROBE_EVERY`` optimizer steps it computes the accuracy of the answer token on the rows of
``PROBE_VAL`` (an ``input_output`` JSONL file), appends ``{step, val_accuracy, train_loss}`` to
``PROBE_LOG``, and stops training once the accuracy reaches ``PROBE_TARGET`` (or the clock passes
``PROBE_DEADLINE``, a Unix time).
"""

from __future__ import annotations

import json
import os
import time

from ftcore import hookimpl


def _probe_callback():
    import torch
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def __init__(self):
            self.every = int(os.environ.get("PROBE_EVERY", "100"))
            self.target = float(os.environ.get("PROBE_TARGET", "0.95"))
            with open(os.environ["PROBE_VAL"], encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle]
            self.prompts = [r["segments"][0]["text"] for r in rows]
            self.answers = [r["segments"][1]["text"] for r in rows]
            self.batch = None
            self.last_loss = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.last_loss = logs["loss"]

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            if state.global_step % self.every:
                return
            if self.batch is None:
                tok = processing_class
                prompts = tok(self.prompts, add_special_tokens=False, return_tensors="pt").input_ids
                answers = tok(self.answers, add_special_tokens=False).input_ids
                self.batch = (prompts, torch.tensor([a[0] for a in answers]))
            prompts, answers = self.batch
            was_training = model.training
            model.eval()
            with torch.no_grad():
                device = next(model.parameters()).device
                logits = model(input_ids=prompts.to(device), use_cache=False).logits[:, -1]
                accuracy = (logits.argmax(-1).cpu() == answers).float().mean().item()
            model.train(was_training)
            entry = {
                "step": state.global_step,
                "val_accuracy": accuracy,
                "train_loss": self.last_loss,
            }
            with open(os.environ["PROBE_LOG"], "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
            deadline = float(os.environ.get("PROBE_DEADLINE", "inf"))
            if accuracy >= self.target or time.time() > deadline:
                control.should_training_stop = True

    return Probe()


@hookimpl
def ftcore_callbacks(cfg, model):
    """Measure held-out accuracy while training."""
    return [_probe_callback()]
