"""Prepare the training data: read, tokenize, check lengths, split, shuffle, cache.

The result is cached on disk under a fingerprint of the data files, the tokenizer and the config
keys that change tokenization, so a second ``ftcore train`` (or ``ftcore preprocess`` then
``ftcore train``) does no tokenization at all. The cache folder is written under a temporary name
and renamed when complete, so an interrupted preparation is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcore import __version__
from ftcore.data.preference import RL_FORMATTERS
from ftcore.data.rl_lengths import check_length
from ftcore.data.sources import data_files_of, is_saved_dataset, load_rows
from ftcore.data.strategies import BUILTIN_STRATEGIES, IGNORE_INDEX, RowError
from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")

#: Config keys whose value changes what tokenization produces.
TOKENIZATION_KEYS = (
    "sequence_len",
    "excess_length_strategy",
    "train_on_inputs",
    "chat_template",
    "val_set_size",
    "shuffle",
    "seed",
    "strict",
    "rl",
)
REPORT_NAME = "skipped_rows.jsonl"


@dataclass
class PreparedData:
    """Tokenized train (and eval) datasets with ``input_ids`` and ``labels`` columns."""

    train: Any
    eval: Any | None
    fingerprint: str
    cache_dir: Path
    from_cache: bool
    summary: dict[str, Any] = field(default_factory=dict)


def default_cache_root() -> Path:
    return Path(os.environ.get("FTCORE_CACHE_DIR", Path.home() / ".cache" / "ftcore")) / "prepared"


def _hash_path(digest: Any, path: Path) -> None:
    if not path.exists():
        return  # reading it reports the missing file
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)


def _tokenizer_identity(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [
        backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items())),
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
        str(getattr(tokenizer, "chat_template", None)),
        str(len(tokenizer)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _strategy_identity(strategy: Any, cfg: Any) -> str:
    """Which code tokenizes a type: class, its package's version, and what it says it reads.

    A plugin's strategy may define ``fingerprint(cfg) -> str`` over the config keys it reads.
    """
    if strategy is None:
        return "formatter"
    kind = type(strategy)
    package = sys.modules.get(kind.__module__.split(".")[0])
    parts = [f"{kind.__module__}.{kind.__qualname__}", str(getattr(package, "__version__", ""))]
    if callable(getattr(strategy, "fingerprint", None)):
        parts.append(str(strategy.fingerprint(cfg)))
    return "|".join(parts)


def fingerprint(cfg: Any, tokenizer: Any, strategies: dict[str, Any]) -> str:
    """A hash of everything tokenization depends on."""
    digest = hashlib.sha256()
    digest.update(f"ftcore {__version__}".encode())
    for ds in [*cfg.datasets, *cfg.test_datasets]:
        digest.update(json.dumps(ds.model_dump(), sort_keys=True).encode())
        strategy = strategies.get(ds.type)
        digest.update(_strategy_identity(strategy, cfg).encode())
        path = Path(ds.path).expanduser()
        if path.exists():
            targets = (
                [path] if path.is_file() or is_saved_dataset(path) else data_files_of(path, ds)
            )
            for target in targets:
                _hash_path(digest, target)
    digest.update(_tokenizer_identity(tokenizer).encode())
    keys = {key: getattr(cfg, key) for key in TOKENIZATION_KEYS}
    digest.update(json.dumps(keys, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _row_converter(strategy: Any, tokenizer: Any, ds: Any, cfg: Any):
    limit = cfg.sequence_len
    policy = cfg.excess_length_strategy
    extras = list(getattr(strategy, "token_features", {}))

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        try:
            out = strategy.tokenize(row, tokenizer, ds, cfg)
            ids, labels = list(out["input_ids"]), list(out["labels"])
            per_token = {name: list(out[name]) for name in extras}
            if any(len(values) != len(ids) for values in [labels, *per_token.values()]):
                raise RowError("strategy returned per-token fields of different lengths")
            if len(ids) > limit:
                if policy == "truncate":
                    ids, labels = ids[:limit], labels[:limit]
                    per_token = {name: values[:limit] for name, values in per_token.items()}
                else:
                    raise RowError(f"longer than sequence_len ({len(ids)} > {limit} tokens)")
            if labels:
                # The first token is never a target; masking it keeps packed rows from training one
                # example's last token to predict the next example's first.
                labels[0] = IGNORE_INDEX
            if all(label == IGNORE_INDEX for label in labels):
                raise RowError("no trained tokens")
            return {"input_ids": ids, "labels": labels, **per_token, "error": ""}
        except RowError as exc:
            return {
                "input_ids": [],
                "labels": [],
                **{name: [] for name in extras},
                "error": str(exc),
            }

    return convert


def _summarize(reasons: Counter) -> str:
    grouped: Counter = Counter()
    for reason, count in reasons.items():
        key = reason.split(" (")[0] if reason.startswith("longer than") else reason
        grouped[key] += count
    return ", ".join(f"{count} {reason}" for reason, count in grouped.most_common())


def _check_skipped(
    ds: Any, cfg: Any, total: int, errors: list[str], report: Any, report_path: Path
) -> dict:
    """Report the rows that did not fit (one warning, the report file) or raise per the config."""
    skipped = [(index, reason) for index, reason in enumerate(errors) if reason]
    for index, reason in skipped:
        report.write(json.dumps({"dataset": ds.path, "row": index, "reason": reason}) + "\n")
    reasons = Counter(reason for _, reason in skipped)
    too_long = sum(count for reason, count in reasons.items() if reason.startswith("longer than"))
    if too_long and cfg.excess_length_strategy == "error":
        first = next(i for i, r in skipped if r.startswith("longer than"))
        other = "drop" if cfg.rl else "truncate or drop"  # TRL's rows: prompts are never cut
        raise FtcoreError(
            f"dataset {ds.path}: {too_long} {'row is' if too_long == 1 else 'rows are'} longer than "
            f"sequence_len {cfg.sequence_len} "
            f"(first: row {first}, {errors[first].split('(')[1].rstrip(')')}); raise sequence_len, "
            f"or set excess_length_strategy: {other}"
        )
    if skipped and cfg.strict:
        examples = "; ".join(f"row {i}: {r}" for i, r in skipped[:3])
        raise FtcoreError(
            f"dataset {ds.path}: {len(skipped)} of {total} rows do not fit type "
            f"'{ds.type}' ({examples}); fix them, or set strict: false to skip them"
        )
    if len(skipped) == total:
        raise FtcoreError(
            f"dataset {ds.path}: none of its {total} rows fits type '{ds.type}' "
            f"({_summarize(reasons)}); check type, field names and sequence_len"
        )
    if skipped:
        log.warning(
            "ftcore: skipped %d of %d rows of %s (%s); the rows are listed in %s",
            len(skipped),
            total,
            ds.path,
            _summarize(reasons),
            report_path,
        )
    return {"rows": total, "kept": total - len(skipped), "skipped": dict(reasons)}


def _tokenize_one(ds: Any, cfg: Any, tokenizer: Any, strategy: Any, report: Any, report_path: Path):
    import datasets

    map_fingerprint = hashlib.sha256(f"{report_path}|{ds.model_dump_json()}".encode()).hexdigest()[
        :16
    ]
    rows = load_rows(ds, cfg.hf_token)
    processes = cfg.dataset_processes or (os.cpu_count() if len(rows) >= 20_000 else None)
    tokenized = rows.map(
        _row_converter(strategy, tokenizer, ds, cfg),
        remove_columns=rows.column_names,
        new_fingerprint=map_fingerprint,  # ftcore's cache is keyed already; skip hashing the closure
        num_proc=processes,
        desc=f"Tokenizing {ds.path}",
        features=datasets.Features(
            {
                "input_ids": datasets.Sequence(datasets.Value("int32")),
                "labels": datasets.Sequence(datasets.Value("int32")),
                **getattr(strategy, "token_features", {}),
                "error": datasets.Value("string"),
            }
        ),
    )
    stats = _check_skipped(ds, cfg, len(rows), tokenized["error"], report, report_path)
    kept = tokenized.filter(lambda error: not error, input_columns="error").remove_columns("error")
    return kept, stats


def _format_one(ds: Any, cfg: Any, tokenizer: Any, formatter: Any, report: Any, report_path: Path):
    """Preference and RL rows: renamed and normalised for TRL, which tokenizes them itself; their
    lengths are counted here, so ``sequence_len`` holds for them as for SFT rows."""
    import datasets
    from tqdm.auto import tqdm

    rows = load_rows(ds, cfg.hf_token)
    kept, errors = [], []
    for row in tqdm(rows, desc=f"Formatting {ds.path}", disable=len(rows) < 1000):
        try:
            formatted = formatter(row, ds)
            if cfg.rl:
                check_length(formatted, cfg.rl, tokenizer, cfg)
            kept.append(formatted)
            errors.append("")
        except RowError as exc:
            errors.append(str(exc))
    stats = _check_skipped(ds, cfg, len(rows), errors, report, report_path)
    try:
        return datasets.Dataset.from_list(kept), stats
    except Exception as exc:  # pyarrow cannot hold text in some rows and messages in others
        raise FtcoreError(
            f"dataset {ds.path}: rows mix text and message lists in one column ({exc}); "
            "use one form per dataset"
        ) from None


def _split(train: Any, cfg: Any) -> tuple[Any, Any]:
    size = cfg.val_set_size
    if not size:
        return train, None
    test_size = size if size < 1 else int(size)
    held_out = test_size if test_size >= 1 else test_size * len(train)
    if held_out < 1 or held_out >= len(train):
        raise FtcoreError(
            f"val_set_size {size} holds out {held_out:g} of {len(train)} rows; "
            "it must leave at least one row for evaluation and one for training"
        )
    parts = train.train_test_split(test_size=test_size, seed=cfg.seed, shuffle=True)
    return parts["train"], parts["test"]


def prepare_datasets(
    cfg: Any, tokenizer: Any, strategies: dict[str, Any] | None = None
) -> PreparedData:
    """Tokenize (or load from the cache) the datasets of ``cfg``."""
    import datasets

    strategies = {**BUILTIN_STRATEGIES, **(strategies or {})}
    if not cfg.datasets:
        raise FtcoreError("no datasets: add at least one entry under datasets:")
    key = fingerprint(cfg, tokenizer, strategies)
    root = (
        Path(cfg.dataset_prepared_path).expanduser()
        if cfg.dataset_prepared_path
        else default_cache_root()
    )
    cache_dir = root / key
    if (cache_dir / "summary.json").is_file():
        log.info("ftcore: loaded tokenized datasets from cache %s", cache_dir)
        return _from_cache_dir(cache_dir, key, from_cache=True)

    staging = root / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        summary: dict[str, Any] = {"fingerprint": key, "datasets": {}}
        with (staging / REPORT_NAME).open("w", encoding="utf-8") as report:
            parts: dict[str, list[Any]] = {"train": [], "eval": []}
            for split, entries in (("train", cfg.datasets), ("eval", cfg.test_datasets)):
                key_of = "datasets" if split == "train" else "test_datasets"
                for index, ds in enumerate(entries):
                    report_path = cache_dir / REPORT_NAME
                    if ds.type in RL_FORMATTERS:
                        formatter = RL_FORMATTERS[ds.type]
                        part, stats = _format_one(
                            ds, cfg, tokenizer, formatter, report, report_path
                        )
                    elif callable(getattr(strategies.get(ds.type), "format_row", None)):
                        row_formatter = strategies[ds.type].format_row
                        formatter = lambda row, ds, f=row_formatter: f(row, ds, cfg)  # noqa: E731
                        part, stats = _format_one(
                            ds, cfg, tokenizer, formatter, report, report_path
                        )
                    elif ds.type in strategies:
                        strategy = strategies[ds.type]
                        part, stats = _tokenize_one(
                            ds, cfg, tokenizer, strategy, report, report_path
                        )
                    else:
                        raise FtcoreError(f"unknown dataset type '{ds.type}' for {ds.path}")
                    parts[split].append(part)
                    summary["datasets"][f"{key_of}[{index}]"] = {"path": ds.path, **stats}
        trains, evals = parts["train"], parts["eval"]
        train = datasets.concatenate_datasets(trains)
        if evals:
            eval_set = datasets.concatenate_datasets(evals)
        else:
            train, eval_set = _split(train, cfg)
        if cfg.shuffle:
            train = train.shuffle(seed=cfg.seed)
        splits = {"train": train, **({"eval": eval_set} if eval_set is not None else {})}
        datasets.DatasetDict(splits).save_to_disk(str(staging / "data"))
        summary["train_rows"] = len(train)
        summary["eval_rows"] = len(eval_set) if eval_set is not None else 0
        if "input_ids" in train.column_names:
            summary["train_tokens"] = int(sum(len(ids) for ids in train["input_ids"]))
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
        try:
            staging.rename(cache_dir)
        except OSError:
            if not (cache_dir / "summary.json").is_file():
                raise
            shutil.rmtree(staging)  # another process finished the same preparation first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _from_cache_dir(cache_dir, key, from_cache=False)


def _from_cache_dir(cache_dir: Path, key: str, from_cache: bool) -> PreparedData:
    import datasets

    loaded = datasets.load_from_disk(str(cache_dir / "data"))
    return PreparedData(
        train=loaded["train"],
        eval=loaded.get("eval"),
        fingerprint=key,
        cache_dir=cache_dir,
        from_cache=from_cache,
        summary=json.loads((cache_dir / "summary.json").read_text()),
    )
