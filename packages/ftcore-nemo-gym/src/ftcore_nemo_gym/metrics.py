"""``nemo_gym/verify_failures`` in the training logs: completions whose /verify failed."""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")


#: Logs in a row in which every NeMo Gym call failed before the run stops: a server down for good
#: is not waited out for the whole run, one that comes back after a restart is.
STOP_AFTER_FAILED_LOGS = 3


class FailureLogger(TrainerCallback):
    """Adds the failures since the last log (0 included) and warns when there were any; stops
    the run after :data:`STOP_AFTER_FAILED_LOGS` logs in a row where every call failed."""

    def __init__(self, verifier: Any):
        self.verifier = verifier
        self.failed_logs = 0  # logs in a row without one answered call

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        failures, answered = self.verifier.take_counts()
        count = sum(failures.values())
        logs["nemo_gym/verify_failures"] = count
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["nemo_gym/verify_failures"] = count
        all_count, all_answered = _summed_over_processes(count, answered)
        # decided on the sums, so that every process stops together, or none does
        self.failed_logs = self.failed_logs + 1 if all_count and not all_answered else 0
        if not count:
            return
        reasons = ", ".join(f"{n} {reason}" for reason, n in failures.most_common())
        if self.failed_logs >= STOP_AFTER_FAILED_LOGS:
            raise FtcoreError(
                f"every NeMo Gym call failed in the last {self.failed_logs} logs (last: {reasons}), "
                "so every completion scored nemo_gym_failure_reward and nothing is learned; check "
                "that the servers the head server lists run and answer, then resume"
            )
        log.warning(
            "ftcore: %d NeMo Gym /verify calls failed since the last log (%s); they were "
            "scored nemo_gym_failure_reward", count, reasons,
        )  # fmt: skip


def _summed_over_processes(count: int, answered: int) -> tuple[int, int]:
    """``(count, answered)`` summed over every training process (as they are, in one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return count, answered
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    totals = torch.tensor([count, answered], device=device)
    dist.all_reduce(totals)
    return int(totals[0]), int(totals[1])
