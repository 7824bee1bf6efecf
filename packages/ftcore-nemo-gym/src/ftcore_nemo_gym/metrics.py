"""``nemo_gym/verify_failures`` in the training logs: completions whose /verify failed."""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("ftcore")


class FailureLogger(TrainerCallback):
    """Adds the failures since the last log (0 included) and warns when there were any."""

    def __init__(self, verifier: Any):
        self.verifier = verifier

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        failures = self.verifier.take_failures()
        count = sum(failures.values())
        logs["nemo_gym/verify_failures"] = count
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["nemo_gym/verify_failures"] = count
        if count:
            reasons = ", ".join(f"{n} {reason}" for reason, n in failures.most_common())
            log.warning(
                "ftcore: %d NeMo Gym /verify calls failed since the last log (%s); they were "
                "scored nemo_gym_failure_reward", count, reasons,
            )  # fmt: skip
