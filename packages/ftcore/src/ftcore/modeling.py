"""Load the tokenizer and the model, attach adapters, freeze parameters; hooks at every step."""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

from ftcore.errors import FtcoreError, first_line
from ftcore.locations import expand, is_local_path

log = logging.getLogger("ftcore")

#: Named chat templates usable as ``chat_template: <name>``.
NAMED_CHAT_TEMPLATES = {
    "chatml": (
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    ),
}


def _source(value: str | None, what: str) -> str:
    if not value:
        raise FtcoreError(f"{what}: set base_model to a local folder or a hub id")
    return value


def _from_hub_or_path(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
    path = expand(name)
    if is_local_path(name) and not path.exists():
        raise FtcoreError(f"{what} not found: no folder at {name}")
    if not path.exists():  # said first: without a network, the hub client retries for a while
        log.info("ftcore: %s '%s' from the Hugging Face hub (or its local cache)", what, name)
    try:
        return loader(str(path) if path.exists() else name, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise FtcoreError(f"could not load {what} '{name}': {first_line(exc)}") from exc


def load_tokenizer(cfg: Any) -> Any:
    """The tokenizer, with ``special_tokens``, ``tokens`` and ``chat_template`` applied."""
    from transformers import AutoTokenizer

    key = "tokenizer_config" if cfg.tokenizer_config else "base_model"  # the key the user set
    name = _source(cfg.tokenizer_config or cfg.base_model, "tokenizer")
    tokenizer = _from_hub_or_path(
        AutoTokenizer.from_pretrained,
        name,
        f"tokenizer ({key})",
        trust_remote_code=cfg.trust_remote_code,
        token=cfg.hf_token,
    )
    special = {k: v for k, v in cfg.special_tokens.model_dump().items() if v is not None}
    if special:
        tokenizer.add_special_tokens(special)
    if cfg.tokens:
        tokenizer.add_tokens(list(cfg.tokens))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise FtcoreError(
                "the tokenizer has neither a pad nor an eos token; set special_tokens.pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
        log.info("ftcore: the tokenizer has no pad token; using eos (%s)", tokenizer.eos_token)
    if cfg.chat_template:
        tokenizer.chat_template = resolve_chat_template(cfg.chat_template)
    return tokenizer


def resolve_chat_template(value: str) -> str:
    """A chat template from its name (``chatml``) or as the Jinja text given."""
    return NAMED_CHAT_TEMPLATES.get(value, value)


def resolve_dtype(cfg: Any) -> Any:
    import torch

    if cfg.torch_dtype != "auto":
        return getattr(torch, cfg.torch_dtype)
    if cfg.bf16 is True:
        return torch.bfloat16
    if cfg.fp16:
        # fp16 mixed precision keeps float32 master weights; frozen LoRA bases can be float16
        return torch.float16 if cfg.adapter else torch.float32
    return "auto" if cfg.model_init == "pretrained" else torch.float32


def _check_quantization(cfg: Any) -> dict[str, Any]:
    if not (cfg.adapter == "qlora" or cfg.load_in_4bit or cfg.load_in_8bit):
        return {}
    import torch

    if not torch.cuda.is_available():
        raise FtcoreError(
            "adapter: qlora (load_in_4bit/load_in_8bit) needs a CUDA GPU and bitsandbytes; "
            "on this machine use adapter: lora"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FtcoreError("adapter: qlora needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if cfg.load_in_8bit:
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    }


def load_model_config(cfg: Any) -> Any:
    """The model's ``transformers`` config, without weights (plugins check the model type early)."""
    from transformers import AutoConfig

    return _from_hub_or_path(
        AutoConfig.from_pretrained,
        _source(cfg.base_model_config or cfg.base_model, "model config"),
        "model config",
        trust_remote_code=cfg.trust_remote_code,
        token=cfg.hf_token,
    )


def build_model(cfg: Any) -> Any:
    """The base model: pretrained weights, or random weights from its config."""
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(cfg)
    extra: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        extra["attn_implementation"] = cfg.attn_implementation
    if cfg.model_init == "random":
        name = cfg.base_model_config or cfg.base_model
        config = load_model_config(cfg)
        try:
            return AutoModelForCausalLM.from_config(config, dtype=dtype, **extra)
        except (ValueError, ImportError) as exc:
            raise FtcoreError(f"could not build the model from {name}: {exc}") from exc
    name = _source(cfg.base_model, "model")
    return _from_hub_or_path(
        AutoModelForCausalLM.from_pretrained,
        name,
        "model",
        dtype=dtype,
        token=cfg.hf_token,
        **extra,
        **_check_quantization(cfg),
    )


def attach_adapter(cfg: Any, model: Any) -> Any:
    """Wrap ``model`` in a peft LoRA model as the config says."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.adapter == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing
        )
    if cfg.lora_target_linear or not cfg.lora_target_modules:
        targets: Any = "all-linear"
    else:
        targets = list(cfg.lora_target_modules)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        target_parameters=list(cfg.lora_target_parameters or []) or None,
        modules_to_save=list(cfg.lora_modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # peft sets these patterns itself when it fuses gate/up LoRA of MoE experts (double
            # rank and alpha on gate_up_proj), applies them, then checks them against modules
            # only and calls them ignored. ftcore sets no pattern, so the warning is always false.
            warnings.filterwarnings(
                "ignore", r"The following (rank|alpha)_pattern keys did not match", RuntimeWarning
            )
            model = get_peft_model(model, lora)
    except ValueError as exc:
        raise FtcoreError(f"cannot attach LoRA: {exc}") from exc
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def freeze_except(model: Any, patterns: list[str]) -> int:
    """Train only parameters whose name matches one of ``patterns``; return how many tensors train."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise FtcoreError(f"unfrozen_parameters: bad regex '{pattern}': {exc}") from None
    trained = 0
    for name, parameter in model.named_parameters():
        keep = any(regex.search(name) for regex in compiled)
        parameter.requires_grad_(keep)
        trained += keep
    if not trained:
        raise FtcoreError(
            "unfrozen_parameters matches no parameter; names look like "
            f"'{next(iter(dict(model.named_parameters())))}'"
        )
    return trained


def load_model(cfg: Any, tokenizer: Any, host: Any) -> Any:
    """Build the model, resize embeddings, attach the adapter and freeze, calling the model hooks."""
    host.pre_model_load(cfg)
    model = build_model(cfg)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    # Training needs no KV cache; with one, transformers also skips the per-example attention mask
    # that sample packing relies on.
    model.config.use_cache = False
    host.post_model_build(cfg, model)
    if cfg.adapter:
        host.pre_adapter_load(cfg, model)
        model = attach_adapter(cfg, model)
        host.post_adapter_load(cfg, model)
    if cfg.unfrozen_parameters:
        freeze_except(model, cfg.unfrozen_parameters)
    host.post_model_load(cfg, model, tokenizer)
    return model


def lm_head_weight(head: Any) -> Any:
    """The weight an lm_head applies, seen through peft's ``modules_to_save`` wrapper.

    For plugins that compute the loss from hidden states. A LoRA adapter on the lm_head itself
    cannot be folded into one weight here and is refused. Under FSDP2 the weight is a sharded
    DTensor whenever the lm_head's own forward is not running (the loss reads the weight instead of
    calling the module); it is gathered here, and its gradient is averaged over the ranks and
    scattered back to the shards, as FSDP2 does with the gradients it reduces itself.
    """
    if hasattr(head, "modules_to_save") and hasattr(head, "active_adapters"):
        active = [name for name in head.active_adapters if name in head.modules_to_save]
        if active and not getattr(head, "disable_adapters", False):
            head = head.modules_to_save[active[0]]
        else:
            head = head.original_module
    if hasattr(head, "lora_A"):
        raise FtcoreError(
            "a loss computed from hidden states needs a plain lm_head: train it through "
            "lora_modules_to_save, not as a LoRA target"
        )
    weight = head.weight
    if not hasattr(weight, "full_tensor"):
        return weight
    from torch.distributed.tensor import Partial

    return weight.full_tensor(grad_placements=[Partial("avg")] * weight.device_mesh.ndim)


#: Config attributes with which a model rescales its logits (Cohere, Granite) beyond soft-capping.
LOGIT_SCALING_KEYS = ("logit_scale", "logits_scaling")


def logit_scaling(config: Any) -> str | None:
    """``key=value`` of a logit rescaling the model applies after its lm_head, or ``None``.

    Plugins that compute the loss from hidden states use it to refuse such models instead of
    training them against different logits.
    """
    for key in LOGIT_SCALING_KEYS:
        value = getattr(config, key, None)
        if value is not None and value != 1:
            return f"{key}={value}"
    return None
