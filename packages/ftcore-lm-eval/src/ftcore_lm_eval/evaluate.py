"""Run lm-evaluation-harness on the trained (or a named) model, in this process.

The model is loaded once, in the dtype training used, and handed to lm-eval's ``HFLM`` in memory;
a LoRA adapter is merged into a copy of its base first, so the harness sees the trained model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError, first_line
from ftcore.locations import expand, is_local_path
from ftcore_lm_eval.tasks import group_by_fewshot, prepare_include_path, task_manager

log = logging.getLogger("ftcore")


def model_source(cfg: Any) -> str:
    """What is evaluated: ``lm_eval_model``, else the trained model, else the base model."""
    if cfg.lm_eval_model:
        return cfg.lm_eval_model
    output = Path(cfg.output_dir)
    if (output / "config.json").is_file() or (output / "adapter_config.json").is_file():
        return str(output)
    return "base"


def _eval_dtype(cfg: Any) -> Any:
    import torch

    from ftcore.training.arguments import uses_bf16

    if cfg.torch_dtype != "auto":
        return getattr(torch, cfg.torch_dtype)
    return torch.bfloat16 if uses_bf16(cfg) else torch.float32


def load_for_eval(cfg: Any) -> tuple[Any, Any, str]:
    """``(model, tokenizer, description)`` of the model to evaluate, merged and in eval mode."""
    from ftcore.inference import load_trained

    source = model_source(cfg)
    if source == "base":
        model, tokenizer = load_trained(cfg, use_base=True)
        description = f"base model {cfg.base_model}"
    elif source == str(Path(cfg.output_dir)):
        model, tokenizer = load_trained(cfg)
        description = f"trained model in {source}"
    else:
        model, tokenizer = _load_named(source)
        description = source
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        description += " (LoRA adapter merged)"
    import torch

    device = cfg.lm_eval_device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FtcoreError(
            f"lm_eval_device: {device}, but no CUDA GPU is visible here; use cpu or leave it unset"
        )
    return model.to(device=device, dtype=_eval_dtype(cfg)).eval(), tokenizer, description


def _load_named(source: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if is_local_path(source) and not expand(source).exists():
        raise FtcoreError(f"lm_eval_model: no model folder at {source}")
    try:
        if (Path(source) / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(source)
        else:
            model = AutoModelForCausalLM.from_pretrained(source)
        return model, AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise FtcoreError(f"lm_eval_model: cannot load '{source}': {exc}") from exc


def _trained_with_bos(cfg: Any, tokenizer: Any) -> bool:
    """Prompts start with BOS when the model was trained on rows that did (completion, alpaca)."""
    types = {ds.type for ds in cfg.datasets}
    return tokenizer.bos_token is not None and bool(types & {"completion", "alpaca"})


def _summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        task: {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and "_stderr" not in k and k != "sample_len"
        }
        for task, metrics in results.items()
    }


def check_tasks(cfg: Any) -> None:
    """Raise the error ``run_evaluation`` would give for an unknown task, without evaluating."""
    groups = group_by_fewshot(cfg.lm_eval_tasks, cfg.lm_eval_num_fewshot)
    include = prepare_include_path(cfg.lm_eval_include_path) if cfg.lm_eval_include_path else None
    try:
        task_manager(include, [name for names in groups.values() for name in names])
    finally:
        if include is not None:
            shutil.rmtree(include, ignore_errors=True)


def run_evaluation(cfg: Any) -> Path:
    """Evaluate ``cfg.lm_eval_tasks``; write ``<output_dir>/lm_eval_results/<time>/results.json``."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if not cfg.lm_eval_tasks:
        raise FtcoreError("lm_eval_tasks is empty: name at least one task")
    groups = group_by_fewshot(cfg.lm_eval_tasks, cfg.lm_eval_num_fewshot)
    include = prepare_include_path(cfg.lm_eval_include_path) if cfg.lm_eval_include_path else None
    try:
        manager = task_manager(include, [name for names in groups.values() for name in names])
        model, tokenizer, description = load_for_eval(cfg)
        log.info("ftcore: lm-eval on %s: %s", description, ", ".join(cfg.lm_eval_tasks))
        lm = HFLM(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=cfg.lm_eval_batch_size,
            add_bos_token=_trained_with_bos(cfg, tokenizer),
        )
        runs = []
        for shots, names in groups.items():
            try:
                result = simple_evaluate(
                    model=lm,
                    tasks=names,
                    num_fewshot=shots,
                    limit=cfg.lm_eval_limit,
                    task_manager=manager,
                    apply_chat_template=cfg.lm_eval_apply_chat_template,
                    bootstrap_iters=0,
                    log_samples=False,
                )
            except (torch.OutOfMemoryError, MemoryError):  # the batch, not the task
                raise
            except Exception as error:  # a task's YAML, template, function or data
                raise _task_failure(cfg, names, error, include) from error
            runs.append(
                {
                    "num_fewshot": shots,
                    "tasks": names,
                    "results": result["results"],
                    "n-samples": result.get("n-samples"),
                    "configs": result.get("configs"),
                    "versions": result.get("versions"),
                }
            )
    finally:
        if include is not None:
            shutil.rmtree(include, ignore_errors=True)
    summary = {task: metrics for run in runs for task, metrics in _summary(run["results"]).items()}
    print(format_table(runs))
    return _write(cfg, description, runs, summary)


def _task_failure(cfg: Any, names: list[str], error: Exception, copy: Path | None) -> FtcoreError:
    """One message for a task that lm-eval could not build or run, naming the user's task folder
    where the harness saw ftcore's copy of it."""
    text = f"{type(error).__name__}: {first_line(error)}"
    hint = ""
    if copy is not None:
        text = text.replace(str(copy), str(cfg.lm_eval_include_path))
        hint = f"; check these tasks' YAML in {cfg.lm_eval_include_path}"
    log.debug("lm-eval failed", exc_info=error)
    return FtcoreError(f"lm-eval could not evaluate {', '.join(names)}: {text}{hint}")


def format_table(runs: list[dict[str, Any]]) -> str:
    """One line per task and metric: shots, value, number of documents."""
    lines = [f"| {'task':<24} | {'shots':>5} | {'metric':<16} | {'value':>7} | {'docs':>5} |"]
    lines.append("|" + "|".join("-" * (width + 2) for width in (24, 5, 16, 7, 5)) + "|")
    for run in runs:
        for task, metrics in _summary(run["results"]).items():
            docs = (run.get("n-samples") or {}).get(task, {}).get("effective", "")
            shots = "-" if run["num_fewshot"] is None else run["num_fewshot"]
            for metric, value in metrics.items():
                lines.append(
                    f"| {task:<24} | {shots!s:>5} | {metric:<16} | {value:>7.4f} | {docs!s:>5} |"
                )
    return "\n".join(lines)


def _write(cfg: Any, description: str, runs: list[dict[str, Any]], summary: dict[str, Any]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(cfg.output_dir) / "lm_eval_results" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"model": description, "tasks": cfg.lm_eval_tasks, "summary": summary, "runs": runs}
    staging = folder / ".results.json.tmp"
    staging.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(staging, folder / "results.json")
    log.info("ftcore: lm-eval results written to %s", folder / "results.json")
    return folder / "results.json"
