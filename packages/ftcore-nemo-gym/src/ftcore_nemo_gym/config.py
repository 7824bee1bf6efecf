"""The ``nemo_gym_*`` keys (the reference's, with its defaults, plus concurrency and retries)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NemoGymDataset(BaseModel):
    """One entry of ``nemo_gym_datasets``: a dataset file and the resources server that scores it."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="The dataset file, as given under `datasets:`.")
    server_name: str | None = Field(
        None, description="Top-level name of the resources server whose /verify scores its rows."
    )


class NemoGymArgs(BaseModel):
    nemo_gym_enabled: bool | None = Field(None, description="Enable the NeMo Gym integration.")
    nemo_gym_dir: str = Field("~/Gym", description="Path to the NeMo Gym checkout.")
    nemo_gym_auto_clone: bool = Field(
        True, description="Clone NeMo Gym into nemo_gym_dir when it is missing."
    )
    nemo_gym_auto_start: bool = Field(
        True,
        description="Start the servers of nemo_gym_config_paths when no head server answers.",
    )
    nemo_gym_config_paths: list[str] = Field(
        default_factory=list, description="Server config YAMLs (relative to nemo_gym_dir)."
    )
    nemo_gym_datasets: list[NemoGymDataset] = Field(
        default_factory=list,
        description="Dataset files with the resources server that scores them (`path`, `server_name`).",
    )
    nemo_gym_head_port: int = Field(11000, gt=0, lt=65536, description="Head server port.")
    nemo_gym_head_host: str = Field("127.0.0.1", description="Head server host.")
    nemo_gym_server_timeout: int = Field(
        360, gt=0, description="Seconds to wait for started servers to answer."
    )
    nemo_gym_verify_timeout: int = Field(30, gt=0, description="Seconds per /verify request.")
    nemo_gym_multi_turn: bool = Field(
        False, description="Multi-turn rollouts through agent /run instead of scoring completions."
    )
    nemo_gym_async_prefetch: bool = Field(
        False,
        description="Multi-turn: run the next batch's episodes while the current batch trains "
        "(Axolotl's trl.async_prefetch).",
    )
    nemo_gym_run_timeout: int = Field(
        300, gt=0, description="Seconds per agent /run request (a whole multi-turn episode)."
    )
    nemo_gym_max_concurrency: int = Field(
        64, gt=0, description="Requests in flight at once while scoring a batch."
    )
    nemo_gym_retries: int = Field(
        2, ge=0, description="Retries of a failed or timed-out request, with backoff."
    )
    nemo_gym_failure_reward: float = Field(
        0.0, description="Reward of a completion whose /verify failed after every retry (counted)."
    )
