"""``sequence_len`` for preference and RL rows, counted in the tokens TRL will make of them.

TRL tokenizes these rows itself, and on its own terms: DPO, KTO and ORPO cut a sequence at
``max_length``; DPO and KTO drop, without a word, a row whose prompt alone fills it, and ORPO
trains nothing of it; GRPO has no prompt limit at all. Counting here, while the rows are
formatted, gives them the rule SFT rows follow (``excess_length_strategy``), the same
skipped-rows report and honest counts in the manifest.
"""

from __future__ import annotations

from typing import Any

from ftcore.data.strategies import RowError

#: The answer columns of each trainer's rows, each trained after the prompt.
ANSWERS = {"dpo": ("chosen", "rejected"), "orpo": ("chosen", "rejected"), "kto": ("completion",)}


def token_count(tokenizer: Any, value: str | list[dict[str, Any]], prompt: bool = False) -> int:
    """Tokens of a text (as the tokenizer's call makes them) or a message list (through the chat
    template, with the generation prompt when it is a ``prompt``), as TRL tokenizes both."""
    if isinstance(value, list):
        encoded = tokenizer.apply_chat_template(
            value, tokenize=True, return_dict=True, add_generation_prompt=prompt
        )
    else:
        encoded = tokenizer(text=value)
    return len(encoded["input_ids"])


def answered_count(tokenizer: Any, prompt: Any, answer: Any) -> int:
    """Tokens of a prompt followed by an answer, as TRL tokenizes the pair (it ends a text answer
    with EOS)."""
    if not isinstance(prompt, list):
        eos = tokenizer.eos_token
        answer = answer if not eos or answer.endswith(eos) else answer + eos
    return token_count(tokenizer, prompt + answer)


def orpo_counts(tokenizer: Any, row: dict[str, Any]) -> tuple[int, list[int]]:
    """Tokens of the prompt, and of the prompt with each answer, as TRL's ORPO tokenizes them:
    message lists rendered to text first, no special tokens, then a BOS before the prompt and an
    EOS after each answer where they are not there already."""
    from trl.data_utils import maybe_apply_chat_template

    text = maybe_apply_chat_template(row, tokenizer)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def ids(value: str) -> list[int]:
        return tokenizer(value, add_special_tokens=False)["input_ids"]

    def with_bos(tokens: list[int]) -> int:
        return len(tokens) + (bos is not None and (not tokens or tokens[0] != bos))

    prompt = ids(text["prompt"])
    answered = []
    for key in ANSWERS["orpo"]:
        full = ids(text["prompt"] + text[key])
        answered.append(with_bos(full) + (not full or full[-1] != eos))
    return with_bos(prompt), answered


def check_length(row: dict[str, Any], method: str, tokenizer: Any, cfg: Any) -> None:
    """Raise :class:`RowError` ("longer than sequence_len (...)") for a formatted row of ``rl:
    method`` that ``cfg.sequence_len`` cannot hold under ``cfg.excess_length_strategy``.

    A prompt that fills the limit is always too long: TRL would train nothing of the row.
    ``truncate`` keeps a pair whose answers run past the limit (TRL cuts their ends); GRPO
    prompts are never cut, so a long one is too long under every strategy.
    """
    limit = cfg.sequence_len
    answers = ANSWERS.get(method, ())
    try:
        if method == "orpo":
            prompt_tokens, counts = orpo_counts(tokenizer, row)
        else:
            prompt_tokens = token_count(tokenizer, row["prompt"], prompt=True)
            counts = [answered_count(tokenizer, row["prompt"], row[key]) for key in answers]
        longest = max(counts, default=0)
    except Exception:  # a row the template cannot render: TRL's own error names it later
        return
    if not answers:  # GRPO: completions are generated after the prompt
        if prompt_tokens > limit:
            raise RowError(
                f"longer than sequence_len (a prompt of {prompt_tokens} > {limit} tokens; "
                "GRPO prompts are not cut)"
            )
        return
    if prompt_tokens >= limit:
        raise RowError(
            f"longer than sequence_len (the prompt alone is {prompt_tokens} of {limit} tokens)"
        )
    if longest > limit and cfg.excess_length_strategy != "truncate":
        raise RowError(f"longer than sequence_len ({longest} > {limit} tokens)")
