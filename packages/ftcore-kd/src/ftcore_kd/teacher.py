"""Online teachers: top-k logprobs for a batch, from a local model or an OpenAI-compatible server.

Both return ``(ids, logprobs, present)`` shaped ``[B, L, k]``, ``[B, L, k]``, ``[B, L]`` in the
row convention of :mod:`ftcore_kd.loss` (row ``i``: the teacher's distribution over token ``i``).
Packed rows are split at their sequence starts, so the teacher never sees across sequences.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from ftcore.errors import FtcoreError, first_line
from ftcore.locations import expand, is_local_path
from ftcore_kd.data import rescale

log = logging.getLogger("ftcore")


def segments(batch: dict[str, Any]) -> list[list[tuple[int, int]]]:
    """Per row, the ``(start, end)`` of each sequence: packed starts, without right padding."""
    input_ids = batch["input_ids"]
    out = []
    for row in range(input_ids.shape[0]):
        end = input_ids.shape[1]
        if "attention_mask" in batch and batch["attention_mask"] is not None:
            end = int(batch["attention_mask"][row].sum())
        starts = [0]
        if batch.get("position_ids") is not None:
            positions = batch["position_ids"][row, :end]
            starts = [int(i) for i in (positions == 0).nonzero().flatten()] or [0]
        bounds = [*starts[1:], end]
        out.append([(s, e) for s, e in zip(starts, bounds) if e > s])
    return out


def _empty(batch: dict[str, Any], k: int):
    import torch

    shape = batch["input_ids"].shape
    ids = torch.zeros(*shape, k, dtype=torch.long)
    logprobs = torch.full((*shape, k), float("-inf"))
    present = torch.zeros(shape, dtype=torch.bool)
    return ids, logprobs, present


def _check_same_tokenizer(path: str, student: Any) -> None:
    """KD compares token ids: a teacher whose own tokenizer gives any of its tokens another id
    than the student's is refused (tokens ftcore added to the student, e.g. a pad, are fine)."""
    from transformers import AutoTokenizer

    if student is None:
        return
    try:
        teacher = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):  # no tokenizer beside the teacher's weights: nothing to compare
        return
    known = student.get_vocab()
    differ = [(t, i) for t, i in teacher.get_vocab().items() if known.get(t) != i]
    if differ:
        token, index = differ[0]
        raise FtcoreError(
            f"kd_teacher_model: the teacher's tokenizer is not the student's ({len(differ)} of its "
            f"tokens have other ids, e.g. {token!r}: {index} against {known.get(token)}); KD "
            "compares token ids, so both need the same tokenizer"
        )


class LocalTeacher:
    """A frozen transformers model on the student's device; its distribution is taken over the
    student's ``vocab`` rows (a teacher padded to more rows has nothing real beyond them)."""

    def __init__(self, path: str, top_k: int, temperature: float, device: Any, dtype: Any,
                 vocab: int | None = None, student_tokenizer: Any = None):  # fmt: skip
        from transformers import AutoModelForCausalLM

        if is_local_path(path) and not expand(path).exists():
            raise FtcoreError(f"kd_teacher_model: no model folder at {path}")
        _check_same_tokenizer(path, student_tokenizer)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError) as error:
            raise FtcoreError(
                f"kd_teacher_model: cannot load {path}: {first_line(error)}"
            ) from None
        self.model = model.to(device).eval()
        self.model.requires_grad_(False)
        self.top_k, self.temperature, self.vocab = top_k, temperature, vocab

    def topk(self, batch: dict[str, Any]):
        import torch

        ids, logprobs, present = _empty(batch, self.top_k)
        device = self.model.device
        with torch.no_grad():
            for row, spans in enumerate(segments(batch)):
                for start, end in spans:
                    tokens = batch["input_ids"][row : row + 1, start:end].to(device)
                    logits = self.model(input_ids=tokens).logits[0, :, : self.vocab].float()
                    top = torch.log_softmax(logits / self.temperature, -1).topk(self.top_k, -1)
                    # logits at position j predict token j + 1: they are row j + 1
                    ids[row, start + 1 : end] = top.indices[:-1].cpu()
                    logprobs[row, start + 1 : end] = top.values[:-1].cpu()
                    present[row, start + 1 : end] = True
        return ids, logprobs, present


class ServerTeacher:
    """vLLM-style ``POST {base}/completions`` with ``prompt_logprobs``, one prompt per sequence."""

    def __init__(self, base_url: str, model: str | None, top_k: int, temperature: float,
                 timeout: float, retries: int, vocab: int | None = None):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.top_k, self.temperature, self.vocab = top_k, temperature, vocab
        self.timeout, self.retries = timeout, retries
        self.model = model or self._first_model()

    def _request(self, path: str, body: dict | None = None) -> dict:
        import http.client

        url = f"{self.base_url}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        last = ""
        tries = 0
        for attempt in range(self.retries + 1):
            tries = attempt + 1
            try:
                request = urllib.request.Request(url, data=data, headers=headers)
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")[:300]
                last = f"HTTP {error.code}: {detail}"
                if error.code < 500:  # the request itself is wrong: asking again will not help
                    hint = (" (vLLM allows 20 prompt logprobs unless started with --max-logprobs; "
                            "lower kd_top_k or raise it)") if "logprob" in detail.lower() else ""  # fmt: skip
                    raise FtcoreError(
                        f"the KD teacher server {url} refused the request: {last}{hint}"
                    ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException,
                    json.JSONDecodeError) as error:  # fmt: skip
                last = f"{type(error).__name__}: {error}"
            if attempt < self.retries:
                delay = min(2.0**attempt, 30.0)
                log.warning(
                    "ftcore: KD teacher %s failed (%s); retrying in %.0fs", url, last, delay
                )
                time.sleep(delay)
        timed_out = "timed out" in last.lower() or last.startswith("TimeoutError")
        raise FtcoreError(
            f"the KD teacher server {url} failed after {tries} tries ({last}); check that it runs "
            "and serves prompt logprobs (vLLM)"
            + (", or raise kd_online_timeout" if timed_out else "")
        )

    def _first_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise FtcoreError(
                f"the KD teacher server {self.base_url} lists no model; set kd_online_model"
            )
        return models[0]["id"]

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[Any]]:
        """The server's ``prompt_logprobs`` for each prompt (token ids)."""
        body = {"model": self.model, "prompt": prompts, "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": self.top_k}  # fmt: skip
        choices = sorted(self._request("/completions", body)["choices"], key=lambda c: c["index"])
        if len(choices) != len(prompts) or any("prompt_logprobs" not in c for c in choices):
            raise FtcoreError(
                f"the KD teacher server {self.base_url} did not return prompt_logprobs for every "
                "prompt; it must support vLLM's prompt_logprobs"
            )
        return [choice["prompt_logprobs"] for choice in choices]

    def topk(self, batch: dict[str, Any]):
        import torch

        ids, logprobs, present = _empty(batch, self.top_k)
        spans = [(row, s, e) for row, parts in enumerate(segments(batch)) for s, e in parts]
        prompts = [batch["input_ids"][row, s:e].tolist() for row, s, e in spans]
        for (row, start, end), entries in zip(spans, self.prompt_logprobs(prompts)):
            if not isinstance(entries, list) or len(entries) != end - start:  # misaligned
                raise FtcoreError(
                    f"the KD teacher server {self.base_url} returned "
                    f"{len(entries) if isinstance(entries, list) else entries!r} prompt_logprobs "
                    f"entries for a prompt of {end - start} tokens; it must return one per token"
                )
            for offset, entry in enumerate(entries):
                if not entry:
                    continue
                pairs = sorted(
                    ((int(t), v["logprob"]) for t, v in entry.items()), key=lambda p: -p[1]
                )
                pairs = pairs[: self.top_k]
                if self.vocab is not None and any(not 0 <= p[0] < self.vocab for p in pairs):
                    token = next(p[0] for p in pairs if not 0 <= p[0] < self.vocab)
                    raise FtcoreError(
                        f"the KD teacher server {self.base_url} returned token id {token}, outside "
                        f"the student's {self.vocab} tokens; it must serve a model with the "
                        "student's tokenizer"
                    )
                values = rescale([p[1] for p in pairs], 1.0, self.temperature)
                ids[row, start + offset, : len(pairs)] = torch.tensor([p[0] for p in pairs])
                logprobs[row, start + offset, : len(pairs)] = torch.tensor(values)
                present[row, start + offset] = True
        return ids, logprobs, present


def make_teacher(cfg: Any, device: Any, dtype: Any, vocab: int | None = None,
                 student_tokenizer: Any = None) -> Any:  # fmt: skip
    """The configured online teacher, or ``None`` for offline KD. ``vocab``: the student's output
    rows (teacher token ids must be below it); ``student_tokenizer``: to compare the teacher's."""
    if cfg.kd_teacher_model:
        return LocalTeacher(cfg.kd_teacher_model, cfg.kd_top_k, cfg.kd_temperature, device, dtype,
                            vocab, student_tokenizer)  # fmt: skip
    if cfg.kd_online_server_base_url:
        return ServerTeacher(cfg.kd_online_server_base_url, cfg.kd_online_model, cfg.kd_top_k,
                             cfg.kd_temperature, cfg.kd_online_timeout, cfg.kd_online_retries,
                             vocab)  # fmt: skip
    return None
