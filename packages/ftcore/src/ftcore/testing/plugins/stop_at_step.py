"""Stops training after the optimizer step named by ``$STOP_AT_STEP``, as an interruption would.

With ``save_steps`` dividing that step, the run leaves a complete checkpoint there, so a test can
resume it and compare with an uninterrupted run.
"""

from __future__ import annotations

import os

from ftcore import hookimpl


@hookimpl
def ftcore_callbacks(cfg, model):
    """A callback that stops training at ``$STOP_AT_STEP`` (no effect when unset)."""
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(os.environ.get("STOP_AT_STEP", "0")):
                control.should_training_stop = True

    return [StopAtStep()]
