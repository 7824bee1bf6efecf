"""Rank helpers for code that must act once per run (logging, notifications, files)."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_accelerator() -> bool:
    """Whether a CUDA GPU is available (imports torch)."""
    import torch

    return torch.cuda.is_available()


def is_main_process() -> bool:
    """True on the process that logs and writes shared files."""
    return rank() == 0
