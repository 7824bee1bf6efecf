"""The ``nemo_gym`` dataset type: NeMo Gym's JSONL rows as GRPO prompts.

A row is ``{"responses_create_params": {"input": [...messages], "tools": [...]?, ...},
"agent_ref": {...}?, ...extras}``. The prompt is ``input`` (a string, or messages whose content
is text or a list of text parts; a row with an image or file part is skipped). The whole row
travels beside the prompt (as JSON, since rows differ in shape) and is sent back to ``/verify``
with the completion, tools and extras included. Rows NeMo Gym would reject are skipped and
reported here, before any server sees them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftcore.data.strategies import RowError

#: Keys NeMo Gym's ``responses_create_params`` accepts (it forbids others: a 422).
CREATE_PARAMS = {
    "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model",
    "parallel_tool_calls", "previous_response_id", "prompt", "reasoning", "service_tier", "store",
    "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
    "include", "background", "conversation", "prompt_cache_key", "safety_identifier",
}  # fmt: skip


#: Content part types that are text, and the key that holds it; others (``input_image``,
#: ``input_file``) are not text.
TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}


def _content(value: Any, position: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict):
                raise RowError(
                    f"input[{position}].content has a part that is {type(part).__name__}, not an "
                    'object such as {"type": "input_text", "text": ...}'
                )
            kind = part.get("type", "text")
            if kind not in TEXT_PARTS:
                raise RowError(
                    f"input[{position}].content has a part of type '{kind}': the prompt would "
                    "lose it, as the policy trains on text; keep only text parts"
                )
            texts.append(str(part.get(TEXT_PARTS[kind], "")))
        return "".join(texts)
    raise RowError(f"input[{position}].content is {type(value).__name__}, not text")


def messages(params: dict[str, Any]) -> list[dict[str, str]]:
    """The prompt: ``input`` as chat messages."""
    items = params.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise RowError("responses_create_params.input is missing or empty")
    out = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or item.get("role") not in (
            "user",
            "system",
            "developer",
            "assistant",
        ):
            raise RowError(f"input[{position}] is not a message with a role")
        role = "system" if item["role"] == "developer" else item["role"]
        out.append({"role": role, "content": _content(item.get("content"), position)})
    return out


def check_tools(tools: Any) -> None:
    """NeMo Gym agents require ``strict: true`` and closed parameter schemas."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise RowError("responses_create_params.tools is not a list")
    for tool in tools:
        name = tool.get("name", "?") if isinstance(tool, dict) else "?"
        if not isinstance(tool, dict) or tool.get("strict") is not True:
            raise RowError(f"tool '{name}' lacks \"strict\": true (NeMo Gym agents reject it)")
        parameters = tool.get("parameters") or {}
        if parameters and parameters.get("additionalProperties") is not False:
            raise RowError(
                f"tool '{name}' parameters lack \"additionalProperties\": false (NeMo Gym agents "
                "reject it)"
            )


def server_for(ds: Any, cfg: Any) -> str:
    """The resources server that ``nemo_gym_datasets`` assigns to this dataset ('' if none)."""
    target = Path(ds.path).expanduser().resolve()
    for entry in cfg.nemo_gym_datasets:
        if Path(entry.path).expanduser().resolve() == target:
            return entry.server_name or ""
    return ""


class NemoGymRows:
    """``type: nemo_gym``: GRPO prompts from NeMo Gym rows (see the module docstring)."""

    def fingerprint(self, cfg: Any) -> str:
        """The routing of ``nemo_gym_datasets`` lands in the rows (part of the cache key)."""
        return json.dumps([entry.model_dump() for entry in cfg.nemo_gym_datasets], sort_keys=True)

    def format_row(self, row: dict[str, Any], ds: Any, cfg: Any) -> dict[str, Any]:
        params = row.get("responses_create_params")
        if not isinstance(params, dict):
            raise RowError("missing field 'responses_create_params'")
        unknown = sorted(set(params) - CREATE_PARAMS)
        if unknown:
            raise RowError(
                f"responses_create_params has keys NeMo Gym rejects: {', '.join(unknown)}"
            )
        check_tools(params.get("tools"))
        agent = row.get("agent_ref")
        if agent is not None and not (isinstance(agent, dict) and agent.get("name")):
            raise RowError("agent_ref has no name")
        return {
            "prompt": messages(params),
            "nemo_gym_row": json.dumps(row, ensure_ascii=False),
            "nemo_gym_server": server_for(ds, cfg),
        }
