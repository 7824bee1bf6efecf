"""Telling a path on this machine from a hub id, without asking the hub."""

from __future__ import annotations

import re
from pathlib import Path

#: A hub repository id: ``name`` or ``namespace/name``.
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")

#: Suffixes of data files; a hub dataset id never ends with one.
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".txt", ".arrow")


def expand(name: str) -> Path:
    """``name`` as a path, ``~`` expanded where it can be (``~nosuchuser/x`` stays as written)."""
    try:
        return Path(name).expanduser()
    except RuntimeError:
        return Path(name)


def is_local_path(name: str) -> bool:
    """Whether ``name`` means a path on this machine: it exists, starts like a path (``.``,
    ``/``, ``~``), or cannot be a hub id (``models/base/v2``)."""
    return expand(name).exists() or name.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(name)


def is_local_data_path(name: str) -> bool:
    """:func:`is_local_path`, or a name with a data file's suffix (``train.jsonl``)."""
    return is_local_path(name) or Path(name).suffix.lower() in DATA_SUFFIXES
