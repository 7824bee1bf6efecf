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
        owners_text = f"plugin '{first_plugin}'{_by(first_claim)} and plugin '{plugin}'{_by(claim)}"
        fixes = [f"set {c.key}: false" for c in (first_claim, claim) if c.key]
        fixes += [f"remove '{name}' from plugins" for name in (first_plugin, plugin)]
        conflicts.append(
            (
                claim.key or first_claim.key or "plugins",
                f"{part.label} is replaced by both {owners_text}; keep one of them: "
                + " or ".join(fixes[:2]),
            )
        )
    return conflicts


def _by(claim: Claim) -> str:
    return f" ({claim.key})" if claim.key else ""
