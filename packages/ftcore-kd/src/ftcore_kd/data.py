"""The ``kd.chat_template`` dataset type: a conversation and the teacher's top-k logprobs per token.

A row holds the messages (``field_messages``) and, in ``logprobs_field``, one entry per token of the
rendered conversation, entry ``i`` being the teacher's top-k for token ``i`` given the tokens before
it (entry 0, and entries of untrained tokens, may be ``null``). Two layouts are read:

- ftcore's: ``{"token_ids": [...k], "logprobs": [...k]}`` per entry (what ``ftcore kd generate`` writes);
- vLLM's: a list of ``{"token": "token_id:123", "logprob": -0.1}`` per entry.

The teacher's generation temperature (``temperature:`` of the dataset) is corrected to
``kd_temperature``: ``p ∝ p_teacher ** (T_gen / T_kd)`` over the k tokens.
"""

from __future__ import annotations

import math
from typing import Any

from ftcore.data.strategies import IGNORE_INDEX, ChatTemplate, RowError

KD_FEATURES = ("kd_token_ids", "kd_logprobs", "kd_mask")


def _entry(entry: Any, position: int) -> tuple[list[int], list[float]]:
    if entry is None:
        return [], []
    if isinstance(entry, dict) and "token_ids" in entry:
        ids, logprobs = entry["token_ids"], entry["logprobs"]
        if len(ids) != len(logprobs):
            raise RowError(f"logprobs entry {position}: token_ids and logprobs differ in length")
        return [int(i) for i in ids], [float(x) for x in logprobs]
    if isinstance(entry, list):
        ids, logprobs = [], []
        for item in entry:
            token = str(item.get("token", "")) if isinstance(item, dict) else ""
            if not token.startswith("token_id:"):
                raise RowError(
                    f"logprobs entry {position}: expected {{'token': 'token_id:N', 'logprob': x}}"
                )
            ids.append(int(token.removeprefix("token_id:")))
            logprobs.append(float(item["logprob"]))
        return ids, logprobs
    raise RowError(f"logprobs entry {position} is {type(entry).__name__}, not a top-k entry")


def rescale(
    logprobs: list[float], generation_temperature: float, kd_temperature: float
) -> list[float]:
    """Log-probabilities over the k tokens at ``kd_temperature`` from ones made at the generation's."""
    if not logprobs or generation_temperature == kd_temperature:
        return logprobs
    scaled = [lp * generation_temperature / kd_temperature for lp in logprobs]
    top = max(scaled)
    total = top + math.log(sum(math.exp(x - top) for x in scaled))
    return [x - total for x in scaled]


def teacher_rows(entries: Any, length: int, top_k: int | None, ds: Any, cfg: Any):
    """``(ids, logprobs, present)`` per token, each row padded to the same k."""
    if not isinstance(entries, list):
        raise RowError(f"missing field '{ds.logprobs_field}' (a list with an entry per token)")
    if len(entries) != length:
        raise RowError(
            f"'{ds.logprobs_field}' has {len(entries)} entries for {length} tokens (was the data "
            "made with another tokenizer or chat template?)"
        )
    rows = []
    for position, entry in enumerate(entries):
        ids, logprobs = _entry(entry, position)
        order = sorted(range(len(ids)), key=lambda i: -logprobs[i])[:top_k]
        ids = [ids[i] for i in order]
        logprobs = rescale([logprobs[i] for i in order], ds.temperature, cfg.kd_temperature)
        rows.append((ids, logprobs))
    width = top_k or max((len(ids) for ids, _ in rows), default=0) or 1
    out_ids, out_logprobs, present = [], [], []
    for ids, logprobs in rows:
        pad = width - len(ids)
        out_ids.append(ids + [0] * pad)
        out_logprobs.append(logprobs + [float("-inf")] * pad)
        present.append(1 if ids else 0)
    return out_ids, out_logprobs, present


class KDChatTemplate(ChatTemplate):
    """``chat_template`` tokenization plus the teacher's top-k per token (see the module docstring)."""

    @property
    def token_features(self) -> dict[str, Any]:
        import datasets

        return {
            "kd_token_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
            "kd_logprobs": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
            "kd_mask": datasets.Sequence(datasets.Value("int8")),
        }

    def fingerprint(self, cfg: Any) -> str:
        """The keys besides the dataset's that shape the rows (part of the cache key)."""
        return f"top_k={cfg.kd_top_k}|temperature={cfg.kd_temperature}"

    def tokenize(self, row, tokenizer, ds, cfg):
        out = super().tokenize(row, tokenizer, ds, cfg)
        ids, logprobs, present = teacher_rows(
            row.get(ds.logprobs_field), len(out["input_ids"]), cfg.kd_top_k, ds, cfg
        )
        mask = [int(p and label != IGNORE_INDEX) for p, label in zip(present, out["labels"])]
        if not any(mask[1:]):
            raise RowError("no trained token has teacher logprobs")
        return {**out, "kd_token_ids": ids, "kd_logprobs": logprobs, "kd_mask": mask}
