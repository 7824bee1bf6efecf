"""Read the rows of one ``datasets:`` entry with the ``datasets`` library.

Local files (JSON, JSONL, Parquet, CSV, text, Arrow) and folders of them, ``save_to_disk`` folders, and
hub dataset names are all read through ``datasets``; nothing here downloads unless ``path`` is a hub
name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftcore.config.schema import DatasetConfig
from ftcore.errors import FtcoreError, first_line
from ftcore.locations import expand, is_local_data_path

_FORMATS = {
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".arrow": "arrow",
}


def file_format(path: Path, ds: DatasetConfig) -> str:
    if ds.ds_type:
        return ds.ds_type
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FtcoreError(
            f"dataset {path}: cannot tell the file format from '{path.suffix}'; "
            f"set ds_type to one of {sorted(set(_FORMATS.values()))}"
        )
    return fmt


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def data_files_of(path: Path, ds: DatasetConfig) -> list[Path]:
    """The data files a local ``path`` stands for (the file itself, or the files in a folder)."""
    if path.is_file():
        return [path]
    if ds.data_files:
        names = [ds.data_files] if isinstance(ds.data_files, str) else ds.data_files
        return [path / name for name in names]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _FORMATS and p.is_file())
    if not files:
        raise FtcoreError(f"dataset folder {path} holds no data file ({', '.join(_FORMATS)})")
    return files


#: Formats read as text: pyarrow accepts bytes that are not UTF-8 there and fails on the row later.
_TEXT_FORMATS = ("json", "csv", "text")


def _is_blank(path: Path, text: bool) -> bool:
    """Empty, or (a ``text`` file of a few MB at most) only whitespace."""
    size = path.stat().st_size
    if size == 0:
        return True
    return text and size <= 4 * 2**20 and not path.read_bytes().strip()


def _check_utf8(path: Path) -> None:
    """Point at the first line of a text data file that is not UTF-8."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FtcoreError(
                    f"dataset {path}: line {number} is not UTF-8 text (byte "
                    f"0x{line[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
                ) from None


def _check_json_lines(path: Path) -> None:
    """Point at the first line of a JSONL file that is not a JSON object."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FtcoreError(
                    f"dataset {path}: line {number} is not valid JSON ({exc.msg} at column "
                    f"{exc.colno}); fix or remove that line"
                ) from None
            if not isinstance(row, dict):
                raise FtcoreError(
                    f"dataset {path}: line {number} is a JSON {type(row).__name__}, not an object "
                    "of fields; fix or remove that line"
                )


def load_rows(ds: DatasetConfig, token: str | None = None) -> Any:
    """The ``datasets.Dataset`` of one ``datasets:`` entry (``token``: for private hub datasets)."""
    import datasets

    path = expand(ds.path)
    try:
        if path.is_dir() and is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if ds.split not in loaded:
                    raise FtcoreError(
                        f"dataset {path} has no split '{ds.split}'; it has {sorted(loaded)}"
                    )
                loaded = loaded[ds.split]
            return loaded
        if path.exists():
            files = data_files_of(path, ds)
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise FtcoreError(f"dataset {ds.path}: data files not found: {', '.join(missing)}")
            formats = {file_format(f, ds) for f in files}
            if len(formats) > 1:
                raise FtcoreError(
                    f"dataset {ds.path} mixes file formats {sorted(formats)}; "
                    "list one format per datasets entry"
                )
            fmt = formats.pop()
            if empty := [str(f) for f in files if _is_blank(f, fmt in _TEXT_FORMATS)]:
                raise FtcoreError(f"dataset {ds.path}: empty file {', '.join(empty)}")
            if fmt in _TEXT_FORMATS:
                for f in files:
                    _check_utf8(f)
            try:
                return datasets.load_dataset(fmt, data_files=[str(f) for f in files], split="train")
            except Exception:
                if fmt == "json":
                    for f in files:
                        if f.suffix.lower() == ".jsonl":
                            _check_json_lines(f)
                raise
        if is_local_data_path(ds.path):
            raise FtcoreError(f"dataset file not found: {ds.path}")
        return datasets.load_dataset(
            ds.path,
            name=ds.name,
            data_files=ds.data_files,
            split=ds.split,
            revision=ds.revision,
            token=token,
        )
    except FtcoreError:
        raise
    except Exception as exc:
        raise FtcoreError(f"could not read dataset {ds.path}: {first_line(exc)}") from exc
