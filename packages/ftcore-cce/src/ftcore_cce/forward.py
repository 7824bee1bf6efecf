"""ftcore's causal-LM forward for training with Cut Cross Entropy, installed on a model instance.

In training with labels, the forward runs the base model, then takes the loss from the final
hidden states and the lm_head weight: no logits tensor is made (``logits`` is ``None``). Everything
else (evaluation, generation, calls without labels) runs the model's own forward, logits included.
The family's extras are kept: final-logit soft-capping (gemma2, gemma3) and the router's
load-balancing loss (mixtral, qwen3_moe).
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

import torch

from ftcore.errors import FtcoreError
from ftcore.modeling import lm_head_weight, logit_scaling
from ftcore_cce.loss import causal_lm_loss

#: Families whose training loss is tested equal to the transformers loss.
SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3",
    "gemma3_text", "phi3", "olmo2",
)  # fmt: skip

_STANDARD_ARGUMENTS = ("input_ids", "attention_mask", "labels", "logits_to_keep")


def _follows_standard_shape(model: Any) -> bool:
    """A ``*ForCausalLM`` with ``model`` and a bias-free ``lm_head`` and the usual forward."""
    head = getattr(model, "lm_head", None)
    parameters = inspect.signature(type(model).forward).parameters
    return (
        isinstance(getattr(model, "model", None), torch.nn.Module)
        and isinstance(head, torch.nn.Linear)
        and head.bias is None
        and all(name in parameters for name in _STANDARD_ARGUMENTS)
    )


def unsupported_reason(model: Any) -> str | None:
    """Why ``model`` cannot train with Cut Cross Entropy, or ``None`` when it can."""
    model_type = getattr(model.config, "model_type", "?")
    scaling = logit_scaling(model.config)
    if scaling:
        return (
            f"cut_cross_entropy does not support {model_type}: the model rescales its logits "
            f"({scaling}), which the kernel would skip. Remove the cce plugin (or set "
            "cut_cross_entropy: false)"
        )
    if _follows_standard_shape(model):
        return None
    return (
        f"cut_cross_entropy does not support {type(model).__name__} (model_type {model_type}); "
        f"supported: {', '.join(SUPPORTED_MODEL_TYPES)} and any *ForCausalLM with a `model` and a "
        "bias-free `lm_head`. Remove the cce plugin (or set cut_cross_entropy: false)"
    )


def _softcap(config: Any) -> float | None:
    # As transformers does: gemma3's multimodal model does not soft-cap, its text model does.
    return getattr(config, "final_logit_softcapping", None)


def _load_balancing_loss(model: Any) -> Any:
    """The family's ``load_balancing_loss_func`` when it is an MoE causal LM, else ``None``."""
    if not hasattr(model, "router_aux_loss_coef"):
        return None
    return getattr(sys.modules[type(model).__module__], "load_balancing_loss_func", None)


def cce_forward(
    self: Any,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    past_key_values: Any = None,
    inputs_embeds: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int | torch.Tensor = 0,
    **kwargs: Any,
) -> Any:
    """The training forward with the loss from hidden states (see the module docstring)."""
    shift_labels = kwargs.pop("shift_labels", None)
    if (labels is None and shift_labels is None) or not self.training:
        if shift_labels is not None:
            kwargs["shift_labels"] = shift_labels
        return self.ftcore_original_forward(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
            use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs,
        )  # fmt: skip
    from transformers.modeling_outputs import CausalLMOutputWithPast, MoeCausalLMOutputWithPast

    num_items_in_batch = kwargs.pop("num_items_in_batch", None)
    balance = _load_balancing_loss(self)
    if balance is not None:
        wanted = kwargs.pop("output_router_logits", None)
        kwargs["output_router_logits"] = (
            self.config.output_router_logits if wanted is None else wanted
        )
    outputs = self.model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
        past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
        **kwargs,
    )  # fmt: skip
    loss = causal_lm_loss(
        outputs.last_hidden_state,
        lm_head_weight(self.lm_head),
        labels,
        shift_labels=shift_labels,
        softcap=_softcap(self.config),
        num_items_in_batch=num_items_in_batch,
    )
    common = {
        "past_key_values": outputs.past_key_values,
        "hidden_states": outputs.hidden_states,
        "attentions": outputs.attentions,
    }
    if balance is None:
        return CausalLMOutputWithPast(loss=loss, logits=None, **common)
    aux_loss = None
    if kwargs["output_router_logits"]:
        aux_loss = balance(
            outputs.router_logits, self.num_experts, self.num_experts_per_tok, attention_mask
        )
        loss = loss + self.router_aux_loss_coef * aux_loss.to(loss.device)
    return MoeCausalLMOutputWithPast(
        loss=loss, aux_loss=aux_loss, logits=None, router_logits=outputs.router_logits, **common
    )


def install(model: Any) -> None:
    """Give ``model`` (a ``*ForCausalLM`` instance) the Cut Cross Entropy training forward."""
    if getattr(model, "ftcore_original_forward", None) is not None:
        return
    reason = unsupported_reason(model)
    if reason:
        raise FtcoreError(reason)
    model.ftcore_original_forward = model.forward
    model.forward = types.MethodType(cce_forward, model)


def uninstall(model: Any) -> None:
    """Restore the model's own forward."""
    original = model.__dict__.pop("ftcore_original_forward", None)
    if original is not None:
        model.__dict__.pop("forward", None)
