"""The filter against hand-computed values, and its place in the optimizer state."""

from __future__ import annotations

import io

import pytest
import torch

from ftcore_grokfast.filter import STATE_KEY, GradFilterEMA

ALPHA, LAMB = 0.9, 2.0
GRADS = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]), torch.tensor([-1.0, 4.0])]


def expected_filtered() -> list[list[float]]:
    """The filter written out by hand, in float64."""
    out, mu = [], None
    for g in GRADS:
        g = [float(x) for x in g]
        mu = g if mu is None else [ALPHA * m + (1 - ALPHA) * x for m, x in zip(mu, g)]
        out.append([x + LAMB * m for x, m in zip(g, mu)])
    return out


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD([p], lr=0.1),
    lambda p: torch.optim.AdamW([p], lr=0.1),
])  # fmt: skip
def test_filtered_gradients_match_the_hand_computation(make_optimizer):
    param = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = make_optimizer(param)
    grokfast = GradFilterEMA(ALPHA, LAMB)
    for grad, want in zip(GRADS, expected_filtered()):
        param.grad = grad.double().clone()
        grokfast.filter_gradients(optimizer)
        assert param.grad.tolist() == pytest.approx(want, abs=1e-12)
        optimizer.step()
        grokfast.after_step(optimizer)
    mu = [
        ALPHA * (ALPHA * 1.0 + 0.1 * 3.0) + 0.1 * -1.0,
        ALPHA * (ALPHA * -2.0 + 0.1 * 0.5) + 0.1 * 4.0,
    ]
    assert optimizer.state[param][STATE_KEY].tolist() == pytest.approx(mu, abs=1e-12)


def test_filter_state_travels_with_the_optimizer_state_dict():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    grokfast = GradFilterEMA(ALPHA, LAMB)
    for grad in GRADS[:2]:
        param.grad = grad.clone()
        grokfast.filter_gradients(optimizer)
        optimizer.step()
        grokfast.after_step(optimizer)
    buffer = io.BytesIO()  # as a checkpoint does: through bytes, sharing no tensor
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert STATE_KEY in saved["state"][0] and "exp_avg" in saved["state"][0]

    restored = torch.optim.AdamW([torch.nn.Parameter(param.detach().clone())], lr=0.1)
    restored.load_state_dict(saved)
    other = GradFilterEMA(ALPHA, LAMB)  # a new process: no memory but the optimizer state
    twin = restored.param_groups[0]["params"][0]
    param.grad, twin.grad = GRADS[2].clone(), GRADS[2].clone()
    grokfast.filter_gradients(optimizer)
    other.filter_gradients(restored)
    assert torch.equal(param.grad, twin.grad)


def test_parameters_without_gradients_are_left_alone():
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    trained = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([frozen, trained], lr=0.1)
    trained.grad = torch.ones(2)
    grokfast = GradFilterEMA()
    grokfast.filter_gradients(optimizer)
    optimizer.step()
    grokfast.after_step(optimizer)
    assert STATE_KEY not in optimizer.state[frozen]
    assert STATE_KEY in optimizer.state[trained]


def test_alpha_outside_its_range_is_rejected():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        GradFilterEMA(alpha=2.0)


def test_a_non_finite_step_is_skipped_and_the_optimizer_still_initialises():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    grokfast = GradFilterEMA(ALPHA, LAMB)
    param.grad = torch.tensor([float("inf"), 1.0])
    grokfast.filter_gradients(optimizer)  # fp16 overflow: the scaler skips this step
    assert param.grad[1] == 1.0  # untouched
    grokfast.after_step(optimizer, skipped=True)  # the scaler skipped optimizer.step()
    assert len(optimizer.state[param]) == 0
    param.grad = GRADS[0].clone()
    grokfast.filter_gradients(optimizer)
    optimizer.step()  # AdamW initialises its state as usual
    grokfast.after_step(optimizer)
    assert {"exp_avg", STATE_KEY} <= set(optimizer.state[param])
    assert optimizer.state[param][STATE_KEY].tolist() == GRADS[0].tolist()
