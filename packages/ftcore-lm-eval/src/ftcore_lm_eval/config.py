"""The ``lm_eval_*`` config keys."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

_TASK = re.compile(r"^[^:\s]+(:\d+)?$")
_DEVICE = re.compile(r"^(cpu|mps|(cuda|xpu|npu|hpu)(:\d+)?)$")


class LMEvalArgs(BaseModel):
    lm_eval_tasks: list[str] = Field(
        default_factory=list,
        description="Tasks to run: `name`, or `name:fewshot` for a task's own number of shots.",
    )
    lm_eval_batch_size: int = Field(8, gt=0, description="Evaluation batch size.")
    lm_eval_post_train: bool = Field(
        True, description="Evaluate after training, once training memory is released."
    )
    lm_eval_model: str | None = Field(
        None, description="Model to evaluate (default: the trained model in `output_dir`)."
    )
    lm_eval_include_path: str | None = Field(
        None, description="Folder of local task YAMLs (relative data paths are resolved for you)."
    )
    lm_eval_limit: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Evaluate at most this many documents per task (or a fraction < 1).",
    )
    lm_eval_num_fewshot: int | None = Field(
        None, ge=0, description="Shots for tasks written without `:fewshot`."
    )
    lm_eval_apply_chat_template: bool = Field(
        False, description="Render prompts through the model's chat template."
    )
    lm_eval_device: str | None = Field(
        None, description="Device to evaluate on (default: `cuda` when available, else `cpu`)."
    )

    @field_validator("lm_eval_limit")
    @classmethod
    def _limit(cls, value: float | None) -> float | None:
        if value is not None and value >= 1 and not value.is_integer():
            raise ValueError(
                f"expected a number of documents (a whole number) or a fraction below 1, got {value}"
            )
        return value

    @field_validator("lm_eval_device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not _DEVICE.match(value):
            raise ValueError(f"expected cpu, cuda, cuda:N, mps, xpu, npu or hpu, got {value!r}")
        return value

    @field_validator("lm_eval_tasks")
    @classmethod
    def _task_specs(cls, value: list[str]) -> list[str]:
        bad = [task for task in value if not _TASK.match(task)]
        if bad:
            raise ValueError(f"write tasks as name or name:fewshot, got {bad[0]!r}")
        return value
