"""One-shot pruning of a dense model with LLM Compressor (SparseGPT or Wanda)."""

from __future__ import annotations

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
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise FtcoreError(
                f"sparsify: {target} already holds files (a model other configs may use); "
                "choose another --output, or pass --overwrite to replace it"
            )
        shutil.rmtree(target)
    tokenizer = load_tokenizer(cfg)
    model = build_model(cfg)
    modifier_class = SparseGPTModifier if method == "sparsegpt" else WandaPruningModifier
    modifier = modifier_class(
        sparsity=sparsity,
        mask_structure="0:0" if structure == "unstructured" else structure,
        targets=["Linear"],
        ignore=["re:.*lm_head"],
    )
    oneshot(
        model=model,
        processor=tokenizer,
        dataset=calibration_rows(cfg, tokenizer, samples),
        recipe=modifier,
        num_calibration_samples=samples,
        max_seq_length=cfg.sequence_len,
        output_dir=str(target),
        save_compressed=True,
    )
    tokenizer.save_pretrained(str(target))
    return target
