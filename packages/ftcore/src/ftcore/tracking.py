"""Text samples from plugins, sent to every tracker of the run.

A plugin that generates during training (diffusion samples, distillation previews) calls
:func:`log_samples` with a few rows of text. The rows always land in
``<output_dir>/samples/<name>.jsonl``; then in the transformers trackers of ``report_to`` that
take tables or text (TensorBoard, Weights & Biases, MLflow); then in tracker plugins through
``ftcore_log_samples``. A tracker that fails is logged and skipped: samples never stop training.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("ftcore")


def log_samples(trainer: Any, name: str, rows: list[dict[str, Any]]) -> Path | None:
    """Record ``rows`` (column -> text) as the samples ``name`` of the current step.

    Runs on the main process only; returns the JSONL file written there (``None`` elsewhere).
    """
    if not rows or not trainer.is_world_process_zero():
        return None
    step = trainer.state.global_step
    rows = [{key: str(value) for key, value in row.items()} for row in rows]
    target = Path(trainer.args.output_dir) / "samples" / f"{name}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"step": step, **row}, ensure_ascii=False) + "\n")
    for callback in trainer.callback_handler.callbacks:
        sender = _SENDERS.get(type(callback).__name__)
        if sender is not None:
            _guarded(type(callback).__name__, sender, callback, name, step, rows)
    host = getattr(trainer, "ftcore_host", None)
    if host is not None:
        _guarded("plugins", host.log_samples, trainer.ftcore_cfg, trainer, name, rows)
    return target


def as_markdown(rows: list[dict[str, str]]) -> str:
    """A markdown table of the rows (TensorBoard renders text as markdown)."""
    columns = list(rows[0])

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _guarded(tracker: str, send: Any, *args: Any) -> None:
    try:
        send(*args)
    except Exception as error:  # a tracker's hiccup must not end a long run
        log.warning("ftcore: could not log samples to %s: %s", tracker, error)


def _to_tensorboard(callback: Any, name: str, step: int, rows: list[dict[str, str]]) -> None:
    if callback.tb_writer is not None:
        callback.tb_writer.add_text(name, as_markdown(rows), step)


def _to_wandb(callback: Any, name: str, step: int, rows: list[dict[str, str]]) -> None:
    wandb = callback._wandb
    if wandb is None or wandb.run is None:
        return
    columns = list(rows[0])
    table = wandb.Table(columns=["step", *columns], data=[[step, *row.values()] for row in rows])
    wandb.log({name: table, "train/global_step": step})


def _to_mlflow(callback: Any, name: str, step: int, rows: list[dict[str, str]]) -> None:
    if getattr(callback, "_initialized", False):
        callback._ml_flow.log_text(as_markdown(rows), f"samples/{name}-step{step:07d}.md")


_SENDERS = {
    "TensorBoardCallback": _to_tensorboard,
    "WandbCallback": _to_wandb,
    "MLflowCallback": _to_mlflow,
}
