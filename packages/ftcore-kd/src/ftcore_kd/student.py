"""The student's final hidden states and lm_head weight, without its full logits."""

from __future__ import annotations

from typing import Any

from ftcore.errors import FtcoreError
from ftcore.modeling import lm_head_weight, logit_scaling


def check_logits(config: Any) -> float | None:
    """The student's final-logit soft-capping (applied by the loss); other rescalings are refused."""
    scaling = logit_scaling(config)
    if scaling:
        raise FtcoreError(
            f"KD computes the student's logits from its hidden states and cannot apply "
            f"{config.model_type}'s logit rescaling ({scaling}); this model is not supported"
        )
    return getattr(config, "final_logit_softcapping", None)


def final_hidden_and_head(model: Any, inputs: dict[str, Any], trainer: Any) -> tuple[Any, Any]:
    """Run the student through its wrappers (DDP, peft), keeping one position of logits."""
    outputs = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs.get("attention_mask"),
        position_ids=inputs.get("position_ids"),
        output_hidden_states=True,
        logits_to_keep=1,
    )
    base = trainer.accelerator.unwrap_model(model) if trainer is not None else model
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    return outputs.hidden_states[-1], lm_head_weight(base.get_output_embeddings())
