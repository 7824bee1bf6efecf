"""The ``use_swanlab`` and ``swanlab_*`` config keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class SwanLabArgs(BaseModel):
    use_swanlab: bool = Field(
        False,
        description="Track the run with SwanLab (on by itself when `swanlab_project` is set).",
    )
    swanlab_project: str | None = Field(None, description="Project name (required when tracking).")
    swanlab_experiment_name: str | None = Field(None, description="Experiment name.")
    swanlab_description: str | None = Field(None, description="Experiment description.")
    swanlab_mode: Literal["cloud", "local", "offline", "disabled"] = Field(
        "cloud", description="Sync mode: `cloud`, `local`, `offline` or `disabled`."
    )
    swanlab_workspace: str | None = Field(None, description="Workspace (organisation) name.")
    swanlab_api_key: str | None = Field(
        None, description="API key (prefer the `SWANLAB_API_KEY` environment variable)."
    )
    swanlab_web_host: str | None = Field(None, description="Web host of a private deployment.")
    swanlab_api_host: str | None = Field(None, description="API host of a private deployment.")
    swanlab_log_model: bool = Field(
        False,
        description="Log model checkpoints (accepted for compatibility; SwanLab has no model store).",
    )
    swanlab_lark_webhook_url: str | None = Field(
        None, description="Lark (Feishu) webhook for start, completion and error notifications."
    )
    swanlab_lark_secret: str | None = Field(
        None, description="HMAC secret of the Lark webhook (signs every notification)."
    )
    swanlab_log_completions: bool = Field(
        True,
        description="Log RL completion tables (grpo; TRL's dpo, kto and orpo expose no completions).",
    )
    swanlab_completion_log_interval: int = Field(
        100, gt=0, description="Steps between completion-table logs."
    )
    swanlab_completion_max_buffer: int = Field(
        128, gt=0, description="Most completions kept between logs (oldest dropped first)."
    )

    @model_validator(mode="before")
    @classmethod
    def _enable_with_a_project(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("swanlab_project") and "use_swanlab" not in data:
            data = {**data, "use_swanlab": True}
        return data
