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


#: A log-probability above this is not one (a little above 0 is float rounding of a certainty).
_MAX_LOGPROB = 1e-3


def _entry(entry: Any, position: int, vocab: int) -> tuple[list[int], list[float]]:
    if entry is None:
        return [], []
    if isinstance(entry, dict) and "token_ids" in entry:
        ids, logprobs = entry["token_ids"], entry.get("logprobs")
        if not isinstance(ids, list) or not isinstance(logprobs, list):
            raise RowError(f"logprobs entry {position}: token_ids and logprobs must be lists")
        if len(ids) != len(logprobs):
            raise RowError(f"logprobs entry {position}: token_ids and logprobs differ in length")
        return _checked(ids, logprobs, position, vocab)
    if isinstance(entry, list):
        ids, logprobs = [], []
        for item in entry:
            token = str(item.get("token", "")) if isinstance(item, dict) else ""
            if not token.startswith("token_id:") or not token[9:].lstrip("-").isdigit():
                raise RowError(
                    f"logprobs entry {position}: expected {{'token': 'token_id:N', 'logprob': x}}"
                )
            ids.append(int(token.removeprefix("token_id:")))
            logprobs.append(item.get("logprob"))
        return _checked(ids, logprobs, position, vocab)
    raise RowError(f"logprobs entry {position} is {type(entry).__name__}, not a top-k entry")


def _checked(ids: list[Any], logprobs: list[Any], position: int, vocab: int):
    """``(ids, logprobs)`` of one entry; a :class:`RowError` for a value no teacher gives."""
    for token, value in zip(ids, logprobs):
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
            raise RowError(
                f"logprobs entry {position}: token id {token!r} is outside the tokenizer's "
                f"{vocab} tokens (was the data made with another tokenizer?)"
            )
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or math.isnan(value) or value > _MAX_LOGPROB:
            raise RowError(
                f"logprobs entry {position}: {value!r} is not a log-probability (a number <= 0)"
            )
    return list(ids), [float(x) for x in logprobs]


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


def teacher_rows(entries: Any, length: int, top_k: int | None, ds: Any, cfg: Any, vocab: int):
    """``(ids, logprobs, present)`` per token, each row padded to the same k; token ids must be
    below ``vocab`` (the student's, :func:`student_vocab`)."""
    if entries is None:
        raise RowError(f"missing field '{ds.logprobs_field}' (a list with an entry per token)")
    if not isinstance(entries, list):
        raise RowError(
            f"field '{ds.logprobs_field}' is {type(entries).__name__}, not a list with an entry "
            "per token"
        )
    if len(entries) != length:
        raise RowError(
            f"'{ds.logprobs_field}' has {len(entries)} entries for {length} tokens (was the data "
            "made with another tokenizer or chat template?)"
        )
    rows = []
    for position, entry in enumerate(entries):
        ids, logprobs = _entry(entry, position, vocab)
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


def most_tokens_held(dataset: Any, rows: int = 32) -> int | None:
    """The most teacher tokens a position holds in the first ``rows`` rows of a tokenized KD
    dataset (rows are padded to ``kd_top_k`` with -inf), or ``None`` for other data."""
    import numpy as np

    if dataset is None or "kd_logprobs" not in (dataset.column_names or []):
        return None
    held = 0
    for logprobs in dataset.select(range(min(rows, len(dataset))))["kd_logprobs"]:
        if logprobs:
            held = max(held, int(np.isfinite(np.asarray(logprobs, np.float32)).sum(-1).max()))
    return held


def student_vocab(cfg: Any, tokenizer: Any) -> int:
    """How many token ids the student has: its config's vocabulary, or the tokenizer's length
    when that is larger (the embeddings are resized to it)."""
    from ftcore.errors import FtcoreError
    from ftcore.modeling import load_model_config

    try:
        configured = load_model_config(cfg).vocab_size
    except (FtcoreError, AttributeError, OSError):  # no readable config: the tokenizer decides
        configured = 0
    return max(len(tokenizer), configured or 0)


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
        key = (getattr(cfg, "base_model", None), len(tokenizer))
        if getattr(self, "_vocab", (None, 0))[0] != key:  # the config is read once per model
            self._vocab = (key, student_vocab(cfg, tokenizer))
        ids, logprobs, present = teacher_rows(
            row.get(ds.logprobs_field), len(out["input_ids"]), cfg.kd_top_k, ds, cfg, self._vocab[1]
        )
        mask = [int(p and label != IGNORE_INDEX) for p, label in zip(present, out["labels"])]
        if not any(mask[1:]):
            raise RowError("no trained token has teacher logprobs")
        return {**out, "kd_token_ids": ids, "kd_logprobs": logprobs, "kd_mask": mask}
