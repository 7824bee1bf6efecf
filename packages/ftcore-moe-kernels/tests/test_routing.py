"""Every supported family's router, computed through the shared routing strategies, gives what the
model's own router gives: the same experts, weights and logits, on random inputs and parameters."""

from __future__ import annotations

import pytest
import torch
from test_models import tiny

from ftcore_moe_kernels.models import TESTED_MODEL_TYPES
from ftcore_moe_kernels.routing import ROUTERS, group_mask, install_routing

# Families whose routers use groups get 8 experts in 4 groups, 2 of them kept.
GROUPED = {"num_experts": 8, "n_routed_experts": 8, "num_local_experts": 8, "n_group": 4,
           "topk_group": 2}  # fmt: skip
CASES = {
    **{name: {} for name in TESTED_MODEL_TYPES if name != "phimoe"},
    "deepseek_v3": GROUPED,
    "glm4_moe": GROUPED,
    "deepseek_v2": {**GROUPED, "topk_method": "group_limited_greedy"},
    "deepseek_v2-greedy": {"topk_method": "greedy"},
    "qwen3_moe-no-renorm": {"norm_topk_prob": False},
}


def routers(model):
    return [m for m in model.modules() if type(m).__name__ in ROUTERS]


def randomize(router):
    """Router parameters and buffers away from their initial values, so that each one matters."""
    with torch.no_grad():
        for tensor in [*router.parameters(), *router.buffers()]:
            tensor.copy_(torch.randn_like(tensor) * 0.5 + (1.0 if tensor.dim() == 1 else 0.0))


def canonical(output):
    """The router output with each token's experts in ascending order (top-k may not sort)."""
    tensors = [t for t in output if t.dim() == 2]
    experts = next(t for t in output if not t.is_floating_point())
    order = experts.argsort(-1)
    return [t if t.shape[-1] != experts.shape[-1] else t.gather(-1, order) for t in tensors]


@pytest.mark.parametrize("precision", ["float32", "bf16-autocast"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_shared_strategies_give_the_routers_own_output(case, precision):
    """Also in a bf16 model under autocast, as ``bf16: true`` trains: routers that force float32
    must still do so, and those that compute in bf16 must not gain precision (other experts)."""
    model_type = case.split("-")[0]
    model = tiny(model_type, **CASES[case])
    dtype = torch.bfloat16 if precision == "bf16-autocast" else torch.float32
    found = routers(model.to(dtype))
    assert found, f"no router of {model_type} is in ROUTERS"
    hidden_size = model.config.hidden_size
    for router in found:
        torch.manual_seed(1)
        randomize(router)
        hidden = torch.randn(512, hidden_size, dtype=dtype)
        extra = (torch.randn(router.num_experts),) if model_type == "minimax_m2" else ()
        with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
            expected = type(router).forward(router, hidden.clone(), *extra)
            got = ROUTERS[type(router).__name__](router, hidden.clone(), *extra)
        for a, b in zip(canonical(got), canonical(expected), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_install_routing_switches_every_router_and_keeps_the_loss():
    model = tiny("deepseek_v3", **GROUPED)
    for router in routers(model):
        randomize(router)
    ids = torch.randint(3, 100, (2, 9))
    before = model(input_ids=ids, labels=ids).loss
    assert install_routing(model) == len(routers(model)) > 0
    assert install_routing(model) == 0  # once
    torch.testing.assert_close(model(input_ids=ids, labels=ids).loss, before)


def test_group_mask_keeps_the_best_groups():
    scores = torch.tensor([[0.1, 0.2, 0.9, 0.8, 0.3, 0.0]])  # groups of 2: (.3) (1.7) (.3)
    assert group_mask(scores, 3, 1, "top2").tolist() == [[False, False, True, True, False, False]]
    scores = torch.tensor([[0.5, 0.0, 0.4, 0.4, 0.0, 0.0]])  # by max: group 0 (.5) beats 1 (.4)
    assert group_mask(scores, 3, 1, "max").tolist() == [[True, True, False, False, False, False]]


def test_every_tested_family_is_routed_here_or_named_as_its_own():
    own = {"phimoe"}  # sparsemixer
    for model_type in TESTED_MODEL_TYPES:
        if model_type not in own:
            assert routers(tiny(model_type)), model_type
