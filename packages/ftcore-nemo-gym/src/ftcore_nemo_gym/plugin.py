"""Hook implementations of ftcore-nemo-gym (torch is imported only inside hooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore import hookimpl

REWARD_PATH = "ftcore_nemo_gym.rewards.reward_nemo_gym_verify"


class NemoGymPlugin:
    """GRPO rewards from NeMo Gym resources servers; their discovery, start and stop."""

    def __init__(self) -> None:
        self.servers: Any = None  # GymServersProcess
        self.verifier: Any = None

    @hookimpl
    def ftcore_config_schema(self):
        """Add the ``nemo_gym_*`` keys."""
        from ftcore_nemo_gym.config import NemoGymArgs

        return NemoGymArgs

    @hookimpl
    def ftcore_validate_config(self, cfg):
        """GRPO on ``nemo_gym`` datasets; every ``nemo_gym_datasets`` path is one of them."""
        if not cfg.nemo_gym_enabled:
            return None
        problems = []
        if cfg.rl != "grpo":
            problems.append(("rl", "NeMo Gym environments train with rl: grpo"))
        if cfg.nemo_gym_multi_turn:
            problems.append(
                ("nemo_gym_multi_turn", "multi-turn rollouts through agent /run are not "
                 "supported by this version of ftcore-nemo-gym; use single-turn /verify")
            )  # fmt: skip
        paths = {str(Path(ds.path).expanduser()) for ds in cfg.datasets}
        for index, entry in enumerate(cfg.nemo_gym_datasets):
            if str(Path(entry.path).expanduser()) not in paths:
                problems.append(
                    (f"nemo_gym_datasets[{index}].path", f"{entry.path} is not under datasets:")
                )
        for index, ds in enumerate(cfg.datasets):
            if ds.type != "nemo_gym":
                problems.append(
                    (f"datasets[{index}].type", "NeMo Gym rows are read by type: nemo_gym")
                )
        return problems

    @hookimpl
    def ftcore_dataset_strategies(self):
        """``nemo_gym``: NeMo Gym JSONL rows as GRPO prompts."""
        from ftcore_nemo_gym.data import NemoGymRows

        return {"nemo_gym": NemoGymRows()}

    @hookimpl
    def ftcore_reward_functions(self, cfg):
        """``reward_nemo_gym_verify``, unless ``trl.reward_funcs`` names it already."""
        if not cfg.nemo_gym_enabled or REWARD_PATH in cfg.trl.reward_funcs:
            return None
        from ftcore_nemo_gym.rewards import reward_nemo_gym_verify

        return [reward_nemo_gym_verify]

    @hookimpl
    def ftcore_pre_model_load(self, cfg):
        """Find the servers through the head server (starting them if allowed), before the model."""
        if not cfg.nemo_gym_enabled:
            return
        from ftcore_nemo_gym.rewards import activate
        from ftcore_nemo_gym.servers import GymServersProcess
        from ftcore_nemo_gym.verify import Verifier

        self.servers = GymServersProcess(cfg, Path(cfg.output_dir) / "nemo_gym_servers.log")
        self.verifier = Verifier(self.servers.ensure(), cfg)
        activate(self.verifier)

    @hookimpl
    def ftcore_post_trainer_create(self, cfg, trainer):
        """Log ``nemo_gym/verify_failures`` with the loss (first in line, so every logger sees it)."""
        if self.verifier is not None:
            from ftcore_nemo_gym.metrics import FailureLogger

            trainer.callback_handler.callbacks.insert(0, FailureLogger(self.verifier))

    @hookimpl
    def ftcore_post_train_unload(self, cfg):
        """Stop the servers this run started."""
        if self.servers is not None:
            self.servers.stop()

    @hookimpl
    def ftcore_on_train_error(self, cfg, error):
        """Stop the servers this run started, also when it fails."""
        if self.servers is not None:
            self.servers.stop()
