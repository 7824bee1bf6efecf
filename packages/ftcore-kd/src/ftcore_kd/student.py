"""The student's final hidden states and lm_head weight, without its full logits."""

from __future__ import annotations

from typing import Any

from ftcore.modeling import lm_head_weight


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
