"""One-shot pruning of a dense model with LLM Compressor (SparseGPT or Wanda)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError


def calibration_rows(cfg: Any, tokenizer: Any, samples: int) -> Any:
    """``input_ids``/``attention_mask`` rows from the config's datasets, tokenized as for training."""
    import datasets

    from ftcore.data.prepare import prepare_datasets

    prepared = prepare_datasets(cfg, tokenizer)
    ids = prepared.train["input_ids"][:samples]
    if not ids:
        raise FtcoreError("sparsify: the datasets give no calibration rows")
    return datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}
    )


def sparsify_model(
    cfg: Any,
    structure: str,
    sparsity: float | None,
    method: str,
    samples: int,
    output: str | None,
    overwrite: bool = False,
) -> Path:
    """Prune ``base_model`` once; ``sparsity`` is for ``unstructured`` (N:M sets its own)."""
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

    from ftcore.modeling import build_model, load_tokenizer

    if structure == "unstructured":
        sparsity = 0.5 if sparsity is None else sparsity
    else:
        n, m = (int(part) for part in structure.split(":"))
        sparsity = n / m
    target = Path(output) if output else Path(cfg.output_dir) / "sparse"
    _check_target(target, cfg, overwrite)
    tokenizer = load_tokenizer(cfg)
    model = build_model(cfg)
    modifier_class = SparseGPTModifier if method == "sparsegpt" else WandaPruningModifier
    modifier = modifier_class(
        sparsity=sparsity,
        mask_structure="0:0" if structure == "unstructured" else structure,
        targets=["Linear"],
        ignore=["re:.*lm_head"],
    )
    # written beside the target and swapped in whole: a failed run leaves the old folder as it was
    staging = target.with_name(f".{target.name}.ftcore-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        oneshot(
            model=model,
            processor=tokenizer,
            dataset=calibration_rows(cfg, tokenizer, samples),
            recipe=modifier,
            num_calibration_samples=samples,
            max_seq_length=cfg.sequence_len,
            output_dir=str(staging),
            save_compressed=True,
        )
        tokenizer.save_pretrained(str(staging))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_target(target: Path, cfg: Any, overwrite: bool) -> None:
    """Refuse an output folder that holds files (unless ``overwrite``), or that holds the model
    being pruned or the working folder, which replacing it would delete."""
    resolved = target.resolve()
    for what, path in (("base_model", Path(cfg.base_model)), ("the working folder", Path.cwd())):
        path = path.expanduser().resolve()
        if path == resolved or resolved in path.parents:
            raise FtcoreError(f"sparsify: --output {target} holds {what}; choose another folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FtcoreError(
            f"sparsify: {target} already holds files (a model other configs may use); "
            "choose another --output, or pass --overwrite to replace it"
        )
