"""The ``kd_*`` keys."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class KDArgs(BaseModel):
    kd_trainer: bool = Field(
        True, description="Train with the distillation loss (on by listing the plugin)."
    )
    kd_ce_alpha: float = Field(
        0.1, ge=0.0, le=1.0, description="Weight of the cross entropy on the labels."
    )
    kd_alpha: float = Field(0.9, ge=0.0, le=1.0, description="Weight of the distillation term.")
    kd_temperature: float = Field(
        1.0, gt=0.0, description="Distillation temperature T (the term is scaled by T squared)."
    )
    kd_beta: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="0: forward KL(teacher||student); 1: reverse KL(student||teacher); between: "
        "the generalised Jensen-Shannon mix.",
    )
    kd_normalize_topk: bool = Field(
        False,
        description="Renormalise the student's (and teacher's) probabilities over the top-k tokens.",
    )
    kd_top_k: int | None = Field(
        None,
        gt=0,
        description="Keep the teacher's k most probable tokens per position (default: all in the "
        "data; required for online teachers).",
    )
    kd_chunk_tokens: int = Field(
        2048,
        ge=0,
        description="Tokens per chunk of the loss: each chunk's full-vocabulary logits live only "
        "while its gradients are formed (0: autograd on the whole batch's logits at once).",
    )
    kd_teacher_model: str | None = Field(
        None,
        description="Online KD: a local model (folder or hub id) loaded frozen beside the student.",
    )
    kd_online_server_base_url: str | None = Field(
        None,
        description="Online KD: an OpenAI-compatible server (vLLM) that returns prompt logprobs, "
        "e.g. http://127.0.0.1:8000/v1.",
    )
    kd_online_model: str | None = Field(
        None, description="The model name to ask the server for (default: its first model)."
    )
    kd_online_timeout: float = Field(
        120.0, gt=0.0, description="Seconds to wait for one server answer."
    )
    kd_online_retries: int = Field(
        3, ge=0, description="Retries of a failed server request, with backoff."
    )

    @field_validator("kd_online_server_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"expected an http(s):// address, e.g. http://127.0.0.1:8000/v1, got {value!r}"
            )
        return value
