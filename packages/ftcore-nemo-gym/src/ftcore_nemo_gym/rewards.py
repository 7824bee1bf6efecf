"""Reward functions for TRL's GRPO trainer, backed by NeMo Gym.

Single-turn, ``reward_nemo_gym_verify`` scores each completion with ``/verify`` of the row's
resources server. Multi-turn, ``reward_env`` passes on the reward the agent's ``/run`` computed.
The plugin registers the one the config needs through ``ftcore_reward_functions``; either can also
be named in ``trl.reward_funcs`` (``ftcore_nemo_gym.rewards.reward_env``, say): then it is not
added twice.
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


def reward_env(
    prompts: list[Any], completions: list[Any], env_reward: list[float], **kwargs: Any
) -> list[float]:
    """The reward the NeMo Gym agent's ``/run`` gave each multi-turn episode."""
    return [float(reward) for reward in env_reward]
