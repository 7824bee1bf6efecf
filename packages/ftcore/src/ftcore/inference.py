"""Load what a run saved, generate from it, merge LoRA adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore.data.strategies import ALPACA_PROMPT
from ftcore.errors import FtcoreError, first_line
from ftcore.saving import publish, staging_dir


def _trained_dir(cfg: Any) -> Path:
    output = Path(cfg.output_dir)
    if not (output / "config.json").is_file() and not (output / "adapter_config.json").is_file():
        raise FtcoreError(f"no trained model in {output}: run ftcore train first (or pass --base)")
    return output


def load_trained(cfg: Any, use_base: bool = False) -> tuple[Any, Any]:
    """The trained model (base + adapter, or full weights) and its tokenizer, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from ftcore.modeling import build_model, load_tokenizer

    set_seed(cfg.seed)  # a random-init base must come out as it did for training
    if use_base:
        tokenizer = load_tokenizer(cfg)
        model = build_model(cfg)
    else:
        output = _trained_dir(cfg)
        tokenizer = AutoTokenizer.from_pretrained(str(output))
        if (output / "adapter_config.json").is_file():
            from peft import PeftModel

            base = build_model(cfg)
            if len(tokenizer) > base.get_input_embeddings().num_embeddings:
                base.resize_token_embeddings(len(tokenizer))
            try:
                model = PeftModel.from_pretrained(base, str(output))
            except RuntimeError as exc:
                if "size mismatch" not in str(exc):
                    raise
                raise FtcoreError(
                    f"the LoRA adapter in {output} does not fit base_model {cfg.base_model} "
                    f"({_first_mismatch(exc)}); set base_model to the model it was trained on"
                ) from None
        else:
            from safetensors import SafetensorError  # a truncated weights file

            try:
                model = AutoModelForCausalLM.from_pretrained(str(output))
            except (OSError, ValueError, SafetensorError) as exc:
                raise FtcoreError(
                    f"cannot load the model saved in {output} ({type(exc).__name__}: "
                    f"{first_line(exc)}); the files are damaged or incomplete: train again, or "
                    "point output_dir at a complete run"
                ) from None
    return model.eval(), tokenizer


def _first_mismatch(exc: Exception) -> str:
    """The last ``size mismatch for ...`` line of torch's load error."""
    lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
    return lines[-1] if lines else first_line(exc)


def _uses_chat(cfg: Any) -> bool:
    return bool(cfg.chat_template) or any(ds.type == "chat_template" for ds in cfg.datasets)


def _uses_alpaca(cfg: Any) -> bool:
    return bool(cfg.datasets) and all(ds.type == "alpaca" for ds in cfg.datasets)


def _position_limit(config: Any) -> int | None:
    """The positions a model was trained for, or ``None`` where that is no limit (RoPE scaling
    stretches them, and a config without the number says nothing)."""
    limit = getattr(config, "max_position_embeddings", None)
    scaling = getattr(config, "rope_scaling", None) or {}
    if isinstance(scaling, dict) and scaling.get("rope_type", "default") not in ("default", None):
        return None
    return limit if isinstance(limit, int) else None


def make_generator(
    loaded: Any, model: Any, tokenizer: Any, max_new_tokens: int = 64, chat: bool | None = None
):
    """A ``prompt -> completion`` function: a plugin's decoding loop, or greedy ``generate``."""
    import torch

    custom = loaded.host.inference_handler(loaded.cfg, model, tokenizer)
    if custom is not None:
        return custom
    use_chat = _uses_chat(loaded.cfg) if chat is None else chat
    use_alpaca = not use_chat and _uses_alpaca(loaded.cfg)
    if use_chat and not tokenizer.chat_template:
        raise FtcoreError("--chat: the tokenizer has no chat template; set chat_template")

    def generate(prompt: str) -> str:
        if use_chat:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        else:
            if use_alpaca:  # prompt as the model saw instructions in training
                prompt = ALPACA_PROMPT.format(instruction=prompt)
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            if tokenizer.bos_token_id is not None:
                ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)
        limit = _position_limit(getattr(model, "config", None))
        new_tokens = max_new_tokens if limit is None else min(max_new_tokens, limit - ids.shape[1])
        if new_tokens < 1 <= max_new_tokens:  # past its positions, the model writes noise
            raise FtcoreError(
                f"the prompt is {ids.shape[1]} tokens: the model has {limit} positions, and "
                "none is left to generate into; shorten it"
            )
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(model.device),
                attention_mask=torch.ones_like(ids).to(model.device),
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    return generate


def _overwritten_input(target: Path, cfg: Any) -> str | None:
    """What of the run's own files ``target`` holds: the trained adapter, the base model, a
    checkpoint; ``None`` if nothing."""
    from ftcore.locations import expand
    from ftcore.training.checkpoints import MARKER

    where = target.resolve()
    inputs = {"output_dir (the trained adapter)": Path(cfg.output_dir)}
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        if value := getattr(cfg, key):
            inputs[key] = expand(value)
    for name, path in inputs.items():
        if path.exists() and path.resolve().is_relative_to(where):
            return name if path.resolve() == where else f"a folder that holds {name}"
    if (target / MARKER).exists() or (target / "trainer_state.json").exists():
        return "a checkpoint"
    return None


def merge_adapter(cfg: Any, output: str | None = None) -> Path:
    """Merge the trained LoRA adapter into the base weights; save model and tokenizer."""
    if not cfg.adapter:
        raise FtcoreError("merge-lora: this config trains no adapter (adapter is not set)")
    if cfg.adapter == "qlora":
        raise FtcoreError(
            "merge-lora: merge a QLoRA adapter into an unquantized base: set adapter: lora and "
            "load_in_4bit: false for the merge"
        )
    if not (Path(cfg.output_dir) / "adapter_config.json").is_file():
        raise FtcoreError(
            f"merge-lora: {cfg.output_dir} holds no LoRA adapter (adapter_config.json); "
            "run ftcore train with this config first"
        )
    target = Path(output) if output else Path(cfg.output_dir) / "merged"
    if target.exists() and not target.is_dir():
        raise FtcoreError(f"merge-lora: {target} is a file; --output takes a folder")
    if problem := _overwritten_input(target, cfg):
        raise FtcoreError(
            f"merge-lora: --output {target} is {problem}, which the merge would overwrite; "
            f"choose another folder (the default is {Path(cfg.output_dir) / 'merged'})"
        )
    model, tokenizer = load_trained(cfg)
    merged = model.merge_and_unload()
    staging = staging_dir(target)  # an interrupted merge leaves no half-written model in target
    merged.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    publish(staging, target)
    return target
