"""Making a KD dataset: the teacher's top-k for every trained token of every conversation.

The output is JSONL, one row per input row (rows that do not fit are skipped and counted). Each
line is written whole and flushed; a rerun counts the complete lines, drops a half-written last
one, and continues with the next row.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ftcore.data.strategies import IGNORE_INDEX, ChatTemplate, RowError
from ftcore.errors import FtcoreError
from ftcore_kd.data import student_vocab

log = logging.getLogger("ftcore")


def _resume(path: Path) -> int:
    """Complete lines already in ``path``; a trailing partial line is removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        path.write_bytes(complete)
    return complete.count(b"\n")


def _where(name: str | None) -> str | None:
    """A local path in full (a rerun from another folder is the same run); a hub id as given."""
    return str(Path(name).resolve()) if name and Path(name).exists() else name


def _settings(cfg: Any) -> dict[str, Any]:
    """What makes the rows of a KD dataset: its sources, the student's tokenizer, the teacher."""
    return {
        "datasets": [_where(ds.path) for ds in cfg.datasets],
        "student": _where(cfg.base_model),
        "teacher": _where(cfg.kd_teacher_model) or cfg.kd_online_server_base_url,
        "teacher_model": cfg.kd_online_model,
        "kd_top_k": cfg.kd_top_k,
        "kd_temperature": cfg.kd_temperature,
    }


def _record_settings(cfg: Any, target: Path, done: int) -> None:
    """Keep the settings beside the output (``<output>.settings.json``); a rerun that would
    continue the file with other settings is refused, so one file never mixes two teachers."""
    record = target.with_name(f"{target.name}.settings.json")
    settings = _settings(cfg)
    if done and record.is_file():
        try:
            earlier = json.loads(record.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):  # damaged: nothing to compare with
            earlier = settings
        changed = [key for key in settings if earlier.get(key) != settings[key]]
        if changed:
            raise FtcoreError(
                f"kd generate: {target} holds {done} rows made with other settings ("
                + ", ".join(
                    f"{key}: {earlier.get(key)!r}, now {settings[key]!r}" for key in changed
                )
                + "); write to another --output, or delete it to start again"
            )
        return
    staging = record.with_name(f"{record.name}.tmp")
    staging.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    os.replace(staging, record)


def teacher_entries(teacher: Any, input_ids: list[int], labels: list[int]) -> list[Any]:
    """The ``logprobs_field`` entries of one row: top-k for trained tokens, ``None`` elsewhere."""
    import torch

    ids, logprobs, present = teacher.topk({"input_ids": torch.tensor([input_ids])})
    entries: list[Any] = []
    for position, label in enumerate(labels):
        if label == IGNORE_INDEX or not present[0, position]:
            entries.append(None)
            continue
        keep = torch.isfinite(logprobs[0, position])
        entries.append({
            "token_ids": ids[0, position][keep].tolist(),
            "logprobs": [round(x, 6) for x in logprobs[0, position][keep].tolist()],
        })  # fmt: skip
    return entries


def generate_dataset(cfg: Any, output: str) -> tuple[int, int]:
    """Write the KD dataset of ``cfg``'s datasets to ``output``; ``(rows written, rows skipped)``."""
    import torch
    from tqdm.auto import tqdm

    from ftcore.data.sources import load_rows
    from ftcore.modeling import load_tokenizer
    from ftcore_kd.teacher import make_teacher

    target = Path(output)
    sources = [Path(ds.path).resolve() for ds in cfg.datasets]
    if target.resolve() in sources:
        raise FtcoreError(
            f"kd generate: --output {output} is one of the input datasets; write to another file"
        )
    tokenizer = load_tokenizer(cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    teacher = make_teacher(cfg, device, dtype, student_vocab(cfg, tokenizer), tokenizer)
    strategy = ChatTemplate()
    target.parent.mkdir(parents=True, exist_ok=True)
    done = _resume(target)
    _record_settings(cfg, target, done)
    if done:
        log.info("ftcore: %s holds %d rows; continuing after them", target, done)
    index = written = skipped = 0
    with target.open("a", encoding="utf-8") as handle:
        for ds in cfg.datasets:
            rows = load_rows(ds, cfg.hf_token)
            for row in tqdm(rows, desc=f"Teacher logprobs for {ds.path}", unit="row"):
                index += 1
                if index <= done:
                    continue
                try:
                    tokens = strategy.tokenize(row, tokenizer, ds, cfg)
                except RowError as error:
                    log.warning("ftcore: kd generate skips row %d of %s: %s", index, ds.path, error)
                    skipped += 1
                    handle.write(
                        json.dumps({**row, ds.logprobs_field: None, "kd_skipped": str(error)})
                        + "\n"
                    )
                    continue
                entries = teacher_entries(teacher, tokens["input_ids"], tokens["labels"])
                handle.write(
                    json.dumps({**row, ds.logprobs_field: entries}, ensure_ascii=False) + "\n"
                )
                handle.flush()
                written += 1
    return done + written, skipped
