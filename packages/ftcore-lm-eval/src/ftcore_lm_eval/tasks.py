"""Task lists and local task folders for lm-evaluation-harness.

lm-eval resolves relative ``data_files`` (and local ``dataset_path`` folders) against the working
directory, not against the YAML that names them. ``prepare_include_path`` copies a task folder and
rewrites those paths to absolute ones, relative to each YAML, so a task folder works from anywhere.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ftcore.errors import FtcoreError
from ftcore.suggest import did_you_mean


def group_by_fewshot(tasks: list[str], default: int | None) -> dict[int | None, list[str]]:
    """``["a", "b:5"]`` -> ``{default: ["a"], 5: ["b"]}`` (one harness run per group)."""
    groups: dict[int | None, list[str]] = {}
    for spec in tasks:
        name, _, shots = spec.partition(":")
        groups.setdefault(int(shots) if shots else default, []).append(name)
    return groups


class _Tagged:
    """A YAML value with a custom tag (``!function utils.load``), carried through unchanged."""

    def __init__(self, tag: str, value: str):
        self.tag, self.value = tag, value


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_multi_constructor(
    "!", lambda loader, tag, node: _Tagged("!" + tag, loader.construct_scalar(node))
)
_Dumper.add_representer(_Tagged, lambda dumper, data: dumper.represent_scalar(data.tag, data.value))


def _absolute(value: Any, base: Path) -> Any:
    # only files that exist here: a relative path may also be a file of a Hub dataset
    if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
        return str((base / value).resolve())
    if isinstance(value, list):
        return [_absolute(item, base) for item in value]
    if isinstance(value, dict):
        return {key: _absolute(item, base) for key, item in value.items()}
    return value


def _rewrite(config: dict[str, Any], base: Path) -> dict[str, Any]:
    kwargs = config.get("dataset_kwargs")
    if isinstance(kwargs, dict) and "data_files" in kwargs:
        config["dataset_kwargs"] = {**kwargs, "data_files": _absolute(kwargs["data_files"], base)}
    path = config.get("dataset_path")
    if isinstance(path, str) and not Path(path).is_absolute() and (base / path).exists():
        config["dataset_path"] = str((base / path).resolve())
    return config


def prepare_include_path(folder: str | Path) -> Path:
    """A copy of a task folder whose YAMLs name their data by absolute paths."""
    source = Path(folder).expanduser()
    if not source.is_dir():
        raise FtcoreError(f"lm_eval_include_path: {folder} is not a folder of task YAMLs")
    target = Path(tempfile.mkdtemp(prefix="ftcore-lm-eval-tasks-"))
    try:
        shutil.copytree(source, target, dirs_exist_ok=True)
        for copied in target.rglob("*.y*ml"):
            original = source / copied.relative_to(target)
            config = _read_task_file(original)
            if isinstance(config, dict):
                rewritten = _rewrite(config, original.parent.resolve())
                copied.write_text(yaml.dump(rewritten, Dumper=_Dumper, sort_keys=False))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise FtcoreError(f"lm_eval_include_path: cannot read task folder {folder}: {exc}") from exc
    return target


def _read_task_file(path: Path) -> Any:
    with path.open(encoding="utf-8") as stream:  # a stream: YAML errors name the file
        return yaml.load(stream, Loader=_Loader)


def task_folder_problem(folder: str | Path) -> str | None:
    """Why the task YAMLs in ``folder`` cannot be read, or ``None`` (``validate`` asks)."""
    source = Path(folder).expanduser()
    if not source.is_dir():
        return f"{folder} is not a folder of task YAMLs"
    for path in sorted(source.rglob("*.y*ml")):
        try:
            _read_task_file(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            return f"{path} is not a readable task YAML: {' '.join(str(exc).split())}"
    return None


def task_manager(include_path: Path | None, names: list[str]) -> Any:
    """A TaskManager that knows every task in ``names``; local folders first, built-ins if needed."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=str(include_path) if include_path else None, include_defaults=False
    )
    if include_path is None or not set(names) <= set(manager.all_tasks):
        manager = TaskManager(include_path=str(include_path) if include_path else None)
    missing = [name for name in names if name not in manager.all_tasks]
    if missing:
        where = "lm_eval_include_path or lm-eval's built-in tasks"
        raise FtcoreError(
            f"lm_eval_tasks: unknown task '{missing[0]}'{did_you_mean(missing[0], manager.all_tasks)}; "
            f"tasks come from {where}"
        )
    return manager
