"""Dataset ``type:`` strategies: how one row becomes ``input_ids`` and ``labels``.

A strategy is any object with ``tokenize(row, tokenizer, ds, cfg) -> dict`` returning ``input_ids``
and ``labels`` (``-100`` where no loss is computed). A strategy that returns more per-token fields
(a value for each token, e.g. a teacher's top-k logprobs) declares them as ``token_features``, a
dict of field name to ``datasets`` feature; they are truncated and packed with the tokens.

A plugin's type for preference or RL trainers (which tokenize for themselves) defines
``format_row(row, ds, cfg) -> dict`` instead, returning the columns the TRL trainer reads
(``prompt`` for GRPO; other columns reach the reward functions). A row that does not fit the type raises
:class:`RowError` with the reason; the caller counts, skips and reports it. Plugins add strategies
through ``ftcore_dataset_strategies``.
"""

from __future__ import annotations

from typing import Any, Protocol

IGNORE_INDEX = -100


class RowError(ValueError):
    """A row that does not fit its dataset type; the message says why, in a few words."""


class Strategy(Protocol):
    def tokenize(
        self, row: dict[str, Any], tokenizer: Any, ds: Any, cfg: Any
    ) -> dict[str, list[int]]:
        """Turn one row into ``{"input_ids": [...], "labels": [...]}``."""


def _text(row: dict[str, Any], key: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise RowError(f"missing field '{key}'")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field '{key}' is {type(value).__name__}, not text")
    return value


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


class Completion:
    """Raw text, every token trained (pretraining, continued training). Field: ``field`` (``text``)."""

    def tokenize(self, row, tokenizer, ds, cfg):
        ids = _encode(tokenizer, _text(row, ds.field or "text"))
        if not ids:
            raise RowError("empty text")
        if tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id, *ids]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        return {"input_ids": ids, "labels": list(ids)}


ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


class Alpaca:
    """``instruction``, optional ``input``, ``output``; loss on the output (and EOS) only."""

    def tokenize(self, row, tokenizer, ds, cfg):
        instruction = _text(row, "instruction")
        extra = _text(row, "input", required=False)
        output = _text(row, "output")
        template = ALPACA_PROMPT_WITH_INPUT if extra else ALPACA_PROMPT
        prompt = _encode(tokenizer, template.format(instruction=instruction, input=extra))
        if tokenizer.bos_token_id is not None:
            prompt = [tokenizer.bos_token_id, *prompt]
        answer = _encode(tokenizer, output)
        if tokenizer.eos_token_id is not None:
            answer = [*answer, tokenizer.eos_token_id]
        prompt_labels = list(prompt) if cfg.train_on_inputs else [IGNORE_INDEX] * len(prompt)
        return {"input_ids": prompt + answer, "labels": prompt_labels + answer}


_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant"}


def read_messages(turns: Any, ds: Any, field: str) -> list[dict[str, str]]:
    """Messages of a row as ``[{"role", "content"}]``, read through ``message_property_mappings``."""
    if turns is None:
        raise RowError(f"missing field '{field}'")
    if not isinstance(turns, list) or not turns:
        raise RowError(f"field '{field}' is not a non-empty list of messages")
    role_key = ds.message_property_mappings.get("role", "role")
    content_key = ds.message_property_mappings.get("content", "content")
    messages = []
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise RowError(
                f"message {position} of '{field}' lacks '{role_key}' or '{content_key}' "
                "(set message_property_mappings for other key names)"
            )
        content = turn[content_key]
        if not isinstance(content, str):
            raise RowError(f"message {position} content is {type(content).__name__}, not text")
        role = str(turn[role_key])
        messages.append({"role": _ROLE_ALIASES.get(role, role), "content": content})
    return messages


class ChatTemplate:
    """Conversations rendered with a chat template; loss on the roles in ``roles_to_train``.

    Each message's span is found by rendering the conversation prefix by prefix, so any template
    that renders a conversation as the concatenation of its turns works, not only templates that
    mark generations. Role headers (``<|im_start|>assistant``) are not trained; the content and the
    end-of-turn marker are.
    """

    def tokenize(self, row, tokenizer, ds, cfg):
        messages = read_messages(row.get(ds.field_messages), ds, ds.field_messages)
        from ftcore.modeling import resolve_chat_template

        chosen = ds.chat_template or cfg.chat_template
        template = resolve_chat_template(chosen) if chosen else None

        def render(turns: list[dict[str, str]], generation_prompt: bool = False) -> str:
            if not turns and not generation_prompt:
                return ""
            return tokenizer.apply_chat_template(
                turns,
                tokenize=False,
                add_generation_prompt=generation_prompt,
                chat_template=template,
            )

        try:
            full = render(messages)
        except Exception as exc:  # a template error is about this row's content
            raise RowError(f"chat template failed: {exc}") from None
        trained_spans = []
        for index, message in enumerate(messages):
            if message["role"] not in ds.roles_to_train:
                continue
            before = render(messages[:index])
            after = render(messages[: index + 1])
            if message["role"] == "assistant":
                header = render(messages[:index], generation_prompt=True)
                if after.startswith(header):
                    before = header
            if not full.startswith(after) or not after.startswith(before):
                raise RowError(
                    "chat template does not render turns as a prefix of the conversation"
                )
            trained_spans.append((len(before), len(after)))
        if not trained_spans:
            raise RowError(f"no message with a trained role ({', '.join(ds.roles_to_train)})")

        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        labels = [
            token if any(start <= begin < end for start, end in trained_spans) else IGNORE_INDEX
            for token, (begin, _end) in zip(ids, encoded["offset_mapping"])
        ]
        return {"input_ids": ids, "labels": labels}


class InputOutput:
    """Pre-segmented text: ``segments: [{text, label}]``; loss on segments with ``label: true``.

    No special tokens are added: the segments hold exactly the text to train on.
    """

    def tokenize(self, row, tokenizer, ds, cfg):
        segments = row.get("segments")
        if not isinstance(segments, list) or not segments:
            raise RowError("missing field 'segments' (a list of {text, label})")
        ids: list[int] = []
        labels: list[int] = []
        for position, segment in enumerate(segments):
            if not isinstance(segment, dict) or not isinstance(segment.get("text"), str):
                raise RowError(f"segment {position} has no text")
            tokens = _encode(tokenizer, segment["text"])
            ids += tokens
            labels += tokens if segment.get("label", True) else [IGNORE_INDEX] * len(tokens)
        return {"input_ids": ids, "labels": labels}


BUILTIN_STRATEGIES: dict[str, Strategy] = {
    "completion": Completion(),
    "alpaca": Alpaca(),
    "chat_template": ChatTemplate(),
    "input_output": InputOutput(),
}
