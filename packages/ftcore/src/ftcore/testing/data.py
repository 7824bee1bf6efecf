"""Tiny deterministic datasets for tests and examples (the quickstart's data comes from here too).

Every set is about single-digit addition, so a tiny model can learn it in seconds on a CPU.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


def _pairs(count: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(10), rng.randrange(10)) for _ in range(count)]


def addition_rows(repeats: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """``{"text": "3+4=7"}`` for every pair of digits, ``repeats`` times, shuffled."""
    pairs = [(a, b) for a in range(10) for b in range(10)] * repeats
    random.Random(seed).shuffle(pairs)
    return [{"text": f"{a}+{b}={a + b}"} for a, b in pairs]


def preference_rows(count: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """``{prompt, chosen, rejected}``: the right sum is chosen, a wrong one rejected."""
    return [
        {"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str((a + b + 3) % 19)}
        for a, b in _pairs(count, seed)
    ]


def kto_rows(count: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """``{prompt, completion, label}``: right sums are desirable, wrong ones are not."""
    rows = []
    for index, (a, b) in enumerate(_pairs(count, seed)):
        good = index % 2 == 0
        rows.append(
            {
                "prompt": f"{a}+{b}=",
                "completion": str(a + b if good else (a + b + 3) % 19),
                "label": good,
            }
        )
    return rows


def prompt_rows(count: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """``{prompt, answer}`` for GRPO; ``answer`` reaches reward functions as a keyword."""
    return [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in _pairs(count, seed)]


def exact_answer_reward(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion starts with the right answer, else 0.0 (a GRPO reward)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(text.strip().startswith(expected)) for text, expected in zip(texts, answer)]


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)
