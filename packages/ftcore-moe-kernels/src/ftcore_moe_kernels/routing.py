"""The routing strategies of MoE routers, written once (the reference doc's routing table).

A strategy turns router scores into each token's experts and their weights. The routers of the
supported families are each one strategy with their own parameters; :data:`ROUTERS` maps a router
class to the strategy with that router's settings, and :func:`install_routing` makes a model's
routers compute through it (same outputs, same return layout as the router's own forward), so both
experts backends route through this module.

| strategy | families |
|---|---|
| softmax → top-k, optional renormalisation | qwen2_moe, qwen3_moe, qwen3_next, olmoe, mixtral, hunyuan_v1_moe (gate at ``gate.wg``) |
| softmax → top-k → renormalise → per-expert scales | gemma4_text (RMS-normed, scaled input) |
| sigmoid + bias correction → group mask → top-k | deepseek_v3, glm4_moe |
| sigmoid + bias correction → top-k (no groups) | minimax_m2 |
| softmax → group-limited greedy (max per group) | deepseek_v2 |
| softmax + bias correction → top-k, clamped renormalisation | ernie4_5_moe |
| top-k of logits → softmax over the k | granitemoe |

phimoe's sparsemixer (sampling with jitter in training) keeps the model's own router.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

# ---- strategies: scores in, (weights, experts) out


def softmax_topk(
    logits: torch.Tensor, k: int, renormalize: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(probabilities, top-k weights, top-k experts)`` of a softmax router."""
    probabilities = F.softmax(logits, dim=-1, dtype=torch.float)
    weights, experts = torch.topk(probabilities, k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return probabilities, weights, experts


def group_mask(
    choice: torch.Tensor, groups: int, kept_groups: int, group_score: str
) -> torch.Tensor:
    """True for the experts of each token's ``kept_groups`` best groups of ``groups``.

    A group's score is the sum of its two best scores (``top2``) or its best score (``max``).
    """
    grouped = choice.view(-1, groups, choice.shape[-1] // groups)
    if group_score == "top2":
        scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
    else:
        scores = grouped.max(dim=-1).values
    best = torch.topk(scores, k=kept_groups, dim=-1, sorted=False)[1]
    kept = torch.zeros_like(scores).scatter_(1, best, 1).bool()
    return kept.unsqueeze(-1).expand_as(grouped).reshape(choice.shape)


def sigmoid_topk(
    logits: torch.Tensor,
    k: int,
    bias: torch.Tensor,
    groups: int = 1,
    kept_groups: int = 1,
    renormalize: bool = True,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid scores; experts chosen on ``score + bias`` (within the best groups), weighted by
    the scores without the bias. The scores keep the dtype of ``logits``, as the routers'."""
    scores = logits.sigmoid()
    choice = scores + bias
    if groups > 1:
        choice = choice.masked_fill(~group_mask(choice, groups, kept_groups, "top2"), float("-inf"))
    experts = torch.topk(choice, k=k, dim=-1, sorted=False)[1]
    weights = scores.gather(1, experts)
    if renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * scale, experts


def softmax_group_limited_greedy(
    logits: torch.Tensor, k: int, groups: int, kept_groups: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax scores, the ``kept_groups`` groups with the best single score, top-k among them."""
    scores = logits.softmax(dim=-1, dtype=torch.float32)
    if groups > 1:
        scores = scores.masked_fill(~group_mask(scores, groups, kept_groups, "max"), 0.0)
    weights, experts = torch.topk(scores, k=k, dim=-1, sorted=False)
    return weights * scale, experts


def softmax_bias_topk(
    logits: torch.Tensor, k: int, bias: torch.Tensor, norm_min: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax; experts chosen on ``probability + bias``; weights renormalised, the sum clamped."""
    probabilities = F.softmax(logits, dim=1, dtype=torch.float)
    experts = torch.topk(probabilities + bias, k, dim=-1)[1]
    weights = probabilities.gather(-1, experts)
    return weights / torch.clamp(weights.sum(dim=-1, keepdim=True), min=norm_min), experts


def logits_topk_softmax(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of the logits, then a softmax over those k."""
    top, experts = logits.topk(k, dim=-1)
    return torch.softmax(top, dim=-1), experts


# ---- the routers of the supported families, through the strategies


def _softmax_router(router: Any, hidden: torch.Tensor) -> tuple:
    logits = F.linear(hidden.reshape(-1, router.hidden_dim), router.weight)
    _, weights, experts = softmax_topk(logits, router.top_k, router.norm_topk_prob)
    return logits, weights.to(logits.dtype), experts


def _mixtral_router(router: Any, hidden: torch.Tensor) -> tuple:
    logits = F.linear(hidden.reshape(-1, router.hidden_dim), router.weight)
    _, weights, experts = softmax_topk(logits.float(), router.top_k, renormalize=True)
    return logits, weights, experts


def _hunyuan_router(router: Any, hidden: torch.Tensor) -> tuple:
    hidden = hidden.reshape(-1, hidden.shape[-1])
    if router.wg.weight.dtype == torch.float32:
        hidden = hidden.float()
    logits = router.wg(hidden)
    _, weights, experts = softmax_topk(logits, router.top_k, renormalize=True)
    return logits, weights.to(logits.dtype), experts


def _gemma4_router(router: Any, hidden: torch.Tensor) -> tuple:
    hidden = router.norm(hidden) * router.scale * router.scalar_root_size
    probabilities, weights, experts = softmax_topk(
        router.proj(hidden), router.config.top_k_experts, renormalize=True
    )
    return probabilities, weights * router.per_expert_scale[experts], experts


def _sigmoid_group_router(router: Any, hidden: torch.Tensor) -> tuple:
    logits = F.linear(hidden.view(-1, router.hidden_dim).float(), router.weight.float())
    weights, experts = sigmoid_topk(
        logits, router.top_k, router.e_score_correction_bias, router.num_group,
        router.topk_group, router.norm_topk_prob, router.routed_scaling_factor,
    )  # fmt: skip
    return logits, weights, experts


def _minimax_router(router: Any, hidden: torch.Tensor, bias: torch.Tensor) -> tuple:
    logits = F.linear(hidden.reshape(-1, router.hidden_dim).to(router.weight.dtype), router.weight)
    weights, experts = sigmoid_topk(logits.float(), router.top_k, bias)
    return logits, weights, experts


def _deepseek_v2_router(router: Any, hidden: torch.Tensor) -> tuple:
    logits = F.linear(hidden.view(-1, router.hidden_dim).float(), router.weight.float())
    groups = router.num_group if router.topk_method == "group_limited_greedy" else 1
    weights, experts = softmax_group_limited_greedy(
        logits, router.top_k, groups, router.topk_group, router.routed_scaling_factor
    )
    return logits, weights, experts


def _ernie_router(router: Any, hidden: torch.Tensor) -> tuple:
    # float32 even under autocast, as the model's own router
    with torch.autocast(_autocast_device(hidden), enabled=False):
        logits = F.linear(hidden.float(), router.weight.float())
        bias = router.moe_statics.e_score_correction_bias.squeeze()
        weights, experts = softmax_bias_topk(logits, router.top_k, bias, router.norm_min)
    return logits, weights.to(hidden.dtype), experts


def _autocast_device(tensor: torch.Tensor) -> str:
    """The autocast device type of ``tensor`` (transformers' routers use the CPU's for mps)."""
    return tensor.device.type if tensor.device.type != "mps" else "cpu"


def _granite_router(router: Any, hidden: torch.Tensor) -> tuple:
    logits = F.linear(hidden, router.weight).float()
    weights, experts = logits_topk_softmax(logits, router.top_k)
    return experts, weights.type_as(hidden), logits


#: Router class name -> its forward through the strategies above.
ROUTERS: dict[str, Callable[..., tuple]] = {
    "Qwen2MoeTopKRouter": _softmax_router,
    "Qwen3MoeTopKRouter": _softmax_router,
    "Qwen3NextTopKRouter": _softmax_router,
    "OlmoeTopKRouter": _softmax_router,
    "MixtralTopKRouter": _mixtral_router,
    "HunYuanMoEV1Gate": _hunyuan_router,
    "Gemma4TextRouter": _gemma4_router,
    "DeepseekV3TopkRouter": _sigmoid_group_router,
    "Glm4MoeTopkRouter": _sigmoid_group_router,
    "MiniMaxM2TopKRouter": _minimax_router,
    "DeepseekV2TopkRouter": _deepseek_v2_router,
    "Ernie4_5_MoeTopKRouter": _ernie_router,
    "GraniteMoeTopKRouter": _granite_router,
}


def install_routing(model: Any) -> int:
    """Make the model's routers compute through :data:`ROUTERS`; returns how many were switched."""
    count = 0
    for module in model.modules():
        route = ROUTERS.get(type(module).__name__)
        if route is not None and "forward" not in module.__dict__:
            module.forward = types.MethodType(route, module)
            count += 1
    return count
