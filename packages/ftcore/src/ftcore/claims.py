"""Model-part claims: which plugin replaces which part of the model.

Two plugins that patch the same part (both replace the loss head, say) silently overwrite each
other; declaring claims turns that into a config error that names both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ModelPart(enum.StrEnum):
    """A part of a model that a plugin can replace."""

    LOSS_HEAD = "loss_head"
    MOE_EXPERTS = "moe_experts"
    RMSNORM = "rmsnorm"
    ROPE = "rope"
    MLP_ACTIVATION = "mlp_activation"
    ATTENTION = "attention"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    ModelPart.LOSS_HEAD: "the loss head",
    ModelPart.MOE_EXPERTS: "the MoE experts",
    ModelPart.RMSNORM: "RMSNorm",
    ModelPart.ROPE: "RoPE",
    ModelPart.MLP_ACTIVATION: "the MLP activation",
    ModelPart.ATTENTION: "attention",
}


@dataclass(frozen=True)
class Claim:
    """A plugin's claim on one model part.

    :param part: the part replaced.
    :param key: the boolean config key that turns this replacement on, if there is one; error
        messages tell the user to set it to ``false`` to resolve a conflict.
    """

    part: ModelPart
    key: str | None = None


def find_claim_conflicts(claims: list[tuple[str, Claim]]) -> list[tuple[str, str]]:
    """Return a ``(path, message)`` per part claimed by two plugins, in ``plugins:`` order."""
    owners: dict[ModelPart, tuple[str, Claim]] = {}
    conflicts = []
    for plugin, claim in claims:
        part = ModelPart(claim.part)
        if part not in owners:
            owners[part] = (plugin, claim)
            continue
        first_plugin, first_claim = owners[part]
        if first_plugin == plugin:
            continue
        if claim.key:
            conflicts.append(
                (
                    claim.key,
                    f"{part.label} is already replaced by plugin '{first_plugin}'; keep one of them: "
                    f"remove '{first_plugin}' from plugins, or set {claim.key}: false",
                )
            )
        elif first_claim.key:
            conflicts.append(
                (
                    first_claim.key,
                    f"{part.label} is also replaced by plugin '{plugin}'; keep one of them: "
                    f"remove '{plugin}' from plugins, or set {first_claim.key}: false",
                )
            )
        else:
            conflicts.append(
                (
                    "plugins",
                    f"plugins '{first_plugin}' and '{plugin}' both replace {part.label}; "
                    "keep one of them",
                )
            )
    return conflicts
