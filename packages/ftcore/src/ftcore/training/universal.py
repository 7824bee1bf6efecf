"""A DeepSpeed ZeRO checkpoint resumed on another number of processes.

ZeRO splits the optimizer states by data-parallel rank, and DeepSpeed loads such a checkpoint only
on the world size that wrote it. Its *universal* checkpoint holds each parameter's fp32 weight and
optimizer states whole, and loads on any world size (``checkpoint.load_universal``). ftcore
converts a checkpoint once, with DeepSpeed's own ``ds_to_universal``, into
``global_stepN_universal/`` beside the original; the ``latest_universal`` file that DeepSpeed
reads is written last, so an interrupted conversion is never loaded.

Rank 0 converts before the data and the model load; the other ranks wait for that file. (A
file, not a collective: no process group exists yet, and converting a large model's optimizer
states can outlast NCCL's timeouts. If rank 0 fails, torchrun stops the others.)
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ftcore.dist import is_main_process
from ftcore.errors import FtcoreError
from ftcore.training.parallel import deepspeed_config

log = logging.getLogger(__name__)

LATEST = "latest_universal"
_STAGING = ".universal-staging"
#: How long ranks other than 0 wait for the conversion, and how often they look.
WAIT_S, POLL_S = 6 * 3600, 5.0


def zero_world_size(checkpoint: str) -> int | None:
    """How many processes wrote the ZeRO checkpoint in ``checkpoint``; None if it has none."""
    tag = _tag(Path(checkpoint), "latest")
    if tag is None:
        return None
    return len(list((Path(checkpoint) / tag).glob("*optim_states.pt"))) or None


def needs_universal(checkpoint: str, world_size: int) -> bool:
    """Whether ``checkpoint`` is a ZeRO checkpoint of another world size than this run's."""
    written = zero_world_size(checkpoint)
    return written is not None and written != world_size


def universal_loading(value: str | dict[str, Any]) -> dict[str, Any]:
    """The DeepSpeed config that ``deepspeed: value`` names, told to load universal checkpoints."""
    config = deepspeed_config(value)
    return {**config, "checkpoint": {**(config.get("checkpoint") or {}), "load_universal": True}}


def prepare_universal(checkpoint: str, world_size: int) -> None:
    """Have the universal form of ``checkpoint`` ready on this process (see the module)."""
    log.warning(
        "ftcore: %s was written by %s processes and this run has %d: an update now sees "
        "micro_batch_size x gradient_accumulation_steps x %d rows",
        checkpoint,
        zero_world_size(checkpoint),
        world_size,
        world_size,
    )
    if is_main_process():
        write_universal(checkpoint)
    else:
        wait_for_universal(checkpoint)


def wait_for_universal(checkpoint: str) -> None:
    """Wait until rank 0 has published the universal form of ``checkpoint``."""
    deadline = time.monotonic() + WAIT_S
    while _tag(Path(checkpoint), LATEST) is None:
        if time.monotonic() > deadline:
            raise FtcoreError(
                f"waited {WAIT_S // 3600} h for rank 0 to convert {checkpoint} to DeepSpeed's "
                "universal checkpoint; output_dir must be on storage that every node sees"
            )
        time.sleep(POLL_S)


def write_universal(checkpoint: str) -> None:
    """Convert the ZeRO checkpoint in ``checkpoint`` to DeepSpeed's universal format, once
    (one process only). It writes about as much as the optimizer states take, into the
    checkpoint folder."""
    root = Path(checkpoint)
    if _tag(root, LATEST) is not None:
        return
    tag = _tag(root, "latest")
    staging = root / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    converted = staging / f"{tag}_universal"
    log.info("ftcore: converting it to DeepSpeed's universal checkpoint (once)")
    command = [
        sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--inject_missing_state",
        "--input_folder", str(root / str(tag)), "--output_folder", str(converted),
    ]  # fmt: skip
    failed, output = _run_logged(command)
    if failed:
        shutil.rmtree(staging, ignore_errors=True)
        raise FtcoreError(
            f"converting {checkpoint} to DeepSpeed's universal checkpoint failed; resume on the "
            f"number of GPUs that wrote it instead. ds_to_universal said:\n{output}"
        )
    shutil.rmtree(root / converted.name, ignore_errors=True)
    os.replace(converted, root / converted.name)
    pending = staging / LATEST
    pending.write_text(converted.name)
    os.replace(pending, root / LATEST)
    shutil.rmtree(staging, ignore_errors=True)


def _run_logged(command: list[str]) -> tuple[bool, str]:
    """Run ``command`` outside torchrun's process group, logging its output line by line;
    whether it failed, and its last lines."""
    launcher = {
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    }
    env = {key: value for key, value in os.environ.items() if key not in launcher}
    env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1")  # lines as they come, no progress redraws
    last: deque[str] = deque(maxlen=15)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as process:  # fmt: skip
        for line in process.stdout or ():
            last.append(line.rstrip())
            log.info("ds_to_universal: %s", last[-1])
    return process.returncode != 0, "\n".join(last)


def _tag(checkpoint: Path, latest: str) -> str | None:
    """The step folder that DeepSpeed's ``latest`` (or ``latest_universal``) file names."""
    path = checkpoint / latest
    if not path.is_file():
        return None
    tag = path.read_text().strip()
    return tag if (checkpoint / tag).is_dir() else None
