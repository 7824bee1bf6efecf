"""Checkpoints that resume can trust.

transformers writes a checkpoint file by file; a kill in the middle leaves a folder that looks like
a checkpoint. ftcore writes a marker file (atomically: temp file, then rename) once a checkpoint is
complete, and ``resume_from_checkpoint: auto`` only considers folders with the marker.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ftcore.dist import is_main_process
from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")

MARKER = "ftcore-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(checkpoint: Path, step: int) -> None:
    staging = checkpoint / f".{MARKER}.tmp"
    staging.write_text(json.dumps({"global_step": step}))
    os.replace(staging, checkpoint / MARKER)


def unmark(checkpoint: Path) -> None:
    """Take the marker off ``checkpoint`` before its files are written again."""
    (checkpoint / MARKER).unlink(missing_ok=True)


#: What torch's zip writer says when a write fails (a full disk, a lost mount): a RuntimeError.
_WRITE_FAILURES = ("inline_container", "file write failed", "iostream error", "No space left")


def write_failure(checkpoint: Path, error: BaseException) -> FtcoreError | None:
    """The error to show when writing ``checkpoint`` failed on storage (``None``: another error).

    The partial folder is removed first: it is never resumed (it has no marker), and on a full
    disk its space is what the user needs back.
    """
    if not isinstance(error, OSError) and not any(s in str(error) for s in _WRITE_FAILURES):
        return None
    shutil.rmtree(checkpoint, ignore_errors=True)
    try:
        free = f"{shutil.disk_usage(checkpoint.parent).free / 2**30:.1f} GiB free there"
    except OSError:
        free = "its storage cannot be read"
    return FtcoreError(
        f"could not write {checkpoint.name} to {checkpoint.parent} ({free}): "
        f"{str(error).strip().splitlines()[0]}. The partial checkpoint was removed and earlier "
        "checkpoints are kept; free space (or lower save_total_limit) and resume with "
        "resume_from_checkpoint: auto"
    )


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / MARKER).is_file()


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every checkpoint folder, oldest first, complete or not."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint holds: its ``trainer_state.json``, else its name."""
    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        match = _CHECKPOINT.match(checkpoint.name)
        return int(match.group(1)) if match else 0


def newest_complete(output_dir: Path) -> Path | None:
    complete = [path for _, path in checkpoints(output_dir) if is_complete(path)]
    return complete[-1] if complete else None


def resolve_resume(setting: str | None, output_dir: Path) -> str | None:
    """The checkpoint to resume from for ``resume_from_checkpoint`` (``auto``, a path, or unset)."""
    if not setting:
        return None
    if setting == "auto":
        found = newest_complete(output_dir)
        return str(found) if found else None
    path = Path(setting).expanduser()
    if not path.is_dir():
        raise FtcoreError(f"resume_from_checkpoint: no checkpoint folder at {setting}")
    if not is_complete(path):
        if not (path / "trainer_state.json").is_file() and not any(path.glob("*.safetensors")):
            raise FtcoreError(
                f"resume_from_checkpoint: {setting} is not a checkpoint folder (no "
                "trainer_state.json, no weights); give a checkpoint-N folder of output_dir, or auto"
            )
        raise FtcoreError(
            f"resume_from_checkpoint: {setting} is incomplete (no {MARKER}: the save was "
            "interrupted); use resume_from_checkpoint: auto to take the newest complete one"
        )
    return str(path)


def is_final_save_of(manifest: Path, checkpoint: Path, reached_the_end: bool) -> bool:
    """Whether a run resumed from ``checkpoint`` that ``reached_the_end`` (no step left to train)
    has its final save complete: the manifest, written last, records the checkpoint's step and is
    newer than it (not an earlier run's). Rank 0's files decide, for every rank alike."""
    from accelerate.utils import broadcast_object_list

    if not reached_the_end:
        return False
    saved = [is_main_process() and _records_step_of(manifest, checkpoint)]
    broadcast_object_list(saved)
    return saved[0]


def _records_step_of(manifest: Path, checkpoint: Path) -> bool:
    from ftcore.manifest import recorded_step

    try:
        newer = manifest.stat().st_mtime >= (checkpoint / MARKER).stat().st_mtime
    except OSError:  # no manifest
        return False
    return newer and recorded_step(manifest) == checkpoint_step(checkpoint)


def report_finished_run(resume: str, manifest: Path) -> dict[str, Any]:
    """Say that a finished run was resumed; its manifest's metrics (rank 0)."""
    if not is_main_process():
        return {}
    log.warning(
        "ftcore: %s is the run's last step: nothing was left to train, and the saved model and "
        "%s stay as they were. To train further, raise max_steps or num_epochs",
        resume, manifest.name,
    )  # fmt: skip
    return json.loads(manifest.read_text()).get("metrics", {})


#: torch's words when a checkpoint's optimizer state has other parameters than the optimizer.
_OTHER_PARAMETERS = (
    "doesn't match the size of optimizer's group",
    "different number of parameter groups",
)


def other_parameters_error(error: BaseException, resume: str) -> FtcoreError | None:
    """What to tell the user when resuming ``resume`` failed because the run now trains other
    parameters than the checkpoint's optimizer state holds, else ``None``."""
    if not isinstance(error, ValueError) or not any(t in str(error) for t in _OTHER_PARAMETERS):
        return None
    return FtcoreError(
        f"resume_from_checkpoint: {resume} was trained with another set of trained parameters "
        "(its optimizer state does not fit this run's): the config now selects others "
        "(unfrozen_parameters, spectrum's selection, LoRA targets). Resume with the "
        "settings of that run, or start a new one (no resume_from_checkpoint; "
        "overwrite_output_dir: true)"
    )


def clear_earlier_run(setting: str | None, output_dir: Path, overwrite: bool) -> None:
    """Before a new run (no ``resume_from_checkpoint``) in ``output_dir``: delete an earlier run's
    checkpoints with ``overwrite``, else refuse. Beside them, rotation would keep the earlier run's
    higher steps and delete the new run's, and ``auto`` would later resume the wrong run."""
    found = checkpoints(output_dir)
    if setting or not found:
        return
    if overwrite:
        if is_main_process():
            for _, path in found:
                shutil.rmtree(path, ignore_errors=True)
            log.info("ftcore: overwrite_output_dir: removed %d checkpoints of an earlier run in %s",
                     len(found), output_dir)  # fmt: skip
        return
    names = ", ".join(path.name for _, path in found[:3]) + (", ..." if len(found) > 3 else "")
    raise FtcoreError(
        f"output_dir {output_dir} holds checkpoints of an earlier run ({names}); continue that "
        "run with resume_from_checkpoint: auto, or start over: overwrite_output_dir: true (or "
        "--overwrite-output-dir) deletes them, or choose another output_dir"
    )


def rotate(output_dir: Path, keep: int | None) -> None:
    """Keep the ``keep`` newest complete checkpoints; drop incomplete ones older than those."""
    if not keep:
        return
    entries = checkpoints(output_dir)
    complete = [(step, path) for step, path in entries if is_complete(path)]
    kept = complete[-keep:]
    oldest_kept = kept[0][0] if kept else None
    for step, path in entries:
        if (step, path) in kept:
            continue
        if oldest_kept is not None and step < oldest_kept:
            shutil.rmtree(path, ignore_errors=True)
