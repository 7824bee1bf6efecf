"""Reward functions for TRL's GRPO trainer, backed by NeMo Gym.

``reward_nemo_gym_verify`` scores each completion with ``/verify`` of the row's resources server.
The plugin registers it through ``ftcore_reward_functions``; it can also be named in
``trl.reward_funcs`` as ``ftcore_nemo_gym.rewards.reward_nemo_gym_verify`` (then it is not added
twice).
"""

from __future__ import annotations

from typing import Any

from ftcore.errors import FtcoreError

_active: dict[str, Any] = {}


def activate(verifier: Any) -> None:
    """Make ``verifier`` the one the reward function uses (the plugin does this)."""
    _active["verifier"] = verifier


def reward_nemo_gym_verify(
    prompts: list[Any], completions: list[Any], nemo_gym_row: list[str],
    nemo_gym_server: list[str], **kwargs: Any,
) -> list[float]:  # fmt: skip
    """The ``reward`` NeMo Gym's ``/verify`` gives each completion (scored concurrently)."""
    verifier = _active.get("verifier")
    if verifier is None:
        raise FtcoreError(
            "reward_nemo_gym_verify needs the nemo-gym plugin: add it to plugins and set "
            "nemo_gym_enabled: true"
        )
    return verifier.score(nemo_gym_row, nemo_gym_server, completions)
