"""Dataset types of preference and RL training: rows become the columns TRL's trainers read.

TRL tokenizes these itself (applying the chat template to message lists), so a formatter only
renames and normalises: ``prompt``/``chosen``/``rejected`` for DPO and ORPO, ``prompt``/
``completion``/``label`` for KTO, ``prompt`` (plus any other column, passed to reward functions)
for GRPO. A text prompt keeps text answers; a message-list prompt gets message-list answers.
"""

from __future__ import annotations

from typing import Any

from ftcore.data.strategies import RowError, read_messages


def _text_or_messages(row: dict[str, Any], key: str, ds: Any) -> str | list[dict[str, str]]:
    value = row.get(key)
    if value is None:
        raise RowError(f"missing field '{key}'")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        # an answer such as 12, which JSON and CSV readers hand over as a number (12.0 where the
        # column also holds a blank or a fraction)
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, list):
        return read_messages(value, ds, key)
    raise RowError(f"field '{key}' is {type(value).__name__}, not text or messages")


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise RowError(f"missing field '{key}'" if value is None else f"field '{key}' is not text")
    return value


def _answer_like(prompt: Any, answer: Any, key: str) -> Any:
    """Answers take the prompt's form: message lists stay lists, text stays text."""
    if isinstance(prompt, list):
        return [{"role": "assistant", "content": answer}] if isinstance(answer, str) else answer
    if isinstance(answer, list):
        raise RowError(f"field '{key}' holds messages but the prompt is text; use one form")
    return answer


def _user(text: str, system: str | None = None) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _pair(prompt: Any, chosen: Any, rejected: Any) -> dict[str, Any]:
    if _plain(chosen) == _plain(rejected):
        raise RowError("chosen and rejected are the same answer: the pair prefers nothing")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _plain(answer: Any) -> Any:
    """An answer with the whitespace around its text (or each message's) left out."""
    if isinstance(answer, str):
        return answer.strip()
    return [{**m, "content": m["content"].strip()} if isinstance(m.get("content"), str) else m
            for m in answer]  # fmt: skip


def preference(row: dict[str, Any], ds: Any) -> dict[str, Any]:
    """``{prompt, chosen, rejected}``: text, or message lists."""
    prompt = _text_or_messages(row, "prompt", ds)
    return _pair(
        prompt,
        _answer_like(prompt, _text_or_messages(row, "chosen", ds), "chosen"),
        _answer_like(prompt, _text_or_messages(row, "rejected", ds), "rejected"),
    )


def chatml_intel(row: dict[str, Any], ds: Any) -> dict[str, Any]:
    """Intel/orca_dpo_pairs: ``{system?, question, chosen, rejected}`` (text)."""
    system = row.get("system") if isinstance(row.get("system"), str) else None
    return _pair(
        _user(_text(row, "question"), system),
        _assistant(_text(row, "chosen")),
        _assistant(_text(row, "rejected")),
    )


def chatml_argilla(row: dict[str, Any], ds: Any) -> dict[str, Any]:
    """argilla/distilabel pairs: ``{instruction, chosen_response, rejected_response}`` (text)."""
    return _pair(
        _user(_text(row, "instruction")),
        _assistant(_text(row, "chosen_response")),
        _assistant(_text(row, "rejected_response")),
    )


def _last_assistant(messages: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    if messages[-1]["role"] != "assistant":
        raise RowError(f"the last message of '{key}' is not the assistant's")
    return [messages[-1]]


def chatml_ultra(row: dict[str, Any], ds: Any) -> dict[str, Any]:
    """UltraFeedback binarized: ``{prompt, chosen: [msgs], rejected: [msgs]}``, answers last."""
    chosen = read_messages(row.get("chosen"), ds, "chosen")
    rejected = read_messages(row.get("rejected"), ds, "rejected")
    return _pair(
        _user(_text(row, "prompt")),
        _last_assistant(chosen, "chosen"),
        _last_assistant(rejected, "rejected"),
    )


def kto(row: dict[str, Any], ds: Any) -> dict[str, Any]:
    """``{prompt, completion, label}``: label true for a desirable completion."""
    label = row.get("label")
    if label is None:
        raise RowError("missing field 'label' (true for a desirable completion)")
    if isinstance(label, int) and label in (0, 1):
        label = bool(label)
    if not isinstance(label, bool):
        raise RowError("field 'label' is not true or false")
    prompt = _text_or_messages(row, "prompt", ds)
    completion = _answer_like(prompt, _text_or_messages(row, "completion", ds), "completion")
    return {"prompt": prompt, "completion": completion, "label": label}


def prompt(row: dict[str, Any], ds: Any) -> dict[str, Any]:
    """GRPO prompts: ``prompt`` (or the column ``field`` names), text or messages; other columns
    are kept and reach the reward functions as keyword arguments."""
    source = ds.field or "prompt"
    extras = {key: value for key, value in row.items() if key != source}
    text = _text_or_messages(row, source, ds)
    if not text or (isinstance(text, str) and not text.strip()):
        raise RowError(f"field '{source}' is empty: there is nothing to answer")
    return {**extras, "prompt": text}


RL_FORMATTERS = {
    "preference": preference,
    "chatml.intel": chatml_intel,
    "chatml.argilla": chatml_argilla,
    "chatml.ultra": chatml_ultra,
    "kto": kto,
    "prompt": prompt,
}
