"""The chunked KD loss equals an fp64 reference on full logits, for forward, reverse and mixed beta."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ftcore_kd import loss as kd_loss_module
from ftcore_kd.loss import kd_loss


@pytest.fixture(params=["reference", "triton"])
def row_kernels(request, monkeypatch):
    """Both implementations of a chunk's vocabulary-wide passes (Triton interpreted on CPU, in
    blocks of 16 so that the online log-sum-exp runs over several blocks, the last one partial)."""
    if request.param == "triton":
        pytest.importorskip("triton")
        from ftcore_kd import rowwise

        monkeypatch.setattr(rowwise, "BLOCK", 16)
    monkeypatch.setattr(kd_loss_module, "BACKEND", request.param)
    return request.param


def reference(hidden, weight, labels, t_ids, t_logprobs, t_mask, kd_alpha, ce_alpha, temperature,
              beta, normalize):  # fmt: skip
    """Straight from the definitions, in float64, on the full logits."""
    logits = (hidden.double() @ weight.double().T)[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    ce = F.cross_entropy(logits[keep], targets[keep], reduction="sum")
    s = torch.log_softmax(logits / temperature, -1).gather(-1, t_ids[:, 1:])
    t = t_logprobs[:, 1:].double()
    valid = torch.isfinite(t) & (t_mask[:, 1:] & keep)[..., None]
    rows = valid.any(-1)  # positions with teacher data; only these count
    s, t, valid = s[rows], t[rows], valid[rows]
    t = torch.where(
        valid, t, torch.zeros_like(t)
    )  # padding entries: any finite value, masked below
    if normalize:
        s = s - torch.logsumexp(s.masked_fill(~valid, -torch.inf), -1, keepdim=True)
        t = t - torch.logsumexp(t.masked_fill(~valid, -torch.inf), -1, keepdim=True)
    ps, pt = s.exp(), t.exp()
    if beta == 0:
        per = pt * (t - s)
    elif beta == 1:
        per = ps * (s - t)
    else:
        m = ((1 - beta) * ps + beta * pt).log()
        per = beta * pt * (t - m) + (1 - beta) * ps * (s - m)
    kd = (per * valid).sum()
    return (kd_alpha * temperature**2 * kd + ce_alpha * ce) / keep.sum()


def inputs(seed=0, k=5, vocab=50):
    torch.manual_seed(seed)
    hidden = torch.randn(2, 30, 16, requires_grad=True)
    weight = torch.randn(vocab, 16, requires_grad=True)
    labels = torch.randint(0, vocab, (2, 30))
    labels[0, :7] = -100
    labels[1, 25:] = -100
    t_ids = torch.stack([torch.randperm(vocab)[:k] for _ in range(60)]).view(2, 30, k)
    t_logprobs = torch.log_softmax(torch.randn(2, 30, k) * 2, -1)
    t_logprobs[1, 3, 3:] = -torch.inf  # a teacher row with fewer than k tokens
    t_mask = torch.ones(2, 30, dtype=torch.bool)
    t_mask[0, 10] = False  # no teacher data for one trained token
    t_ids[0, 12, 2] = labels[0, 12]  # the target is among the teacher's tokens
    return hidden, weight, labels, t_ids, t_logprobs, t_mask


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_loss_and_gradients_match_the_fp64_reference(beta, normalize, temperature, row_kernels):
    hidden, weight, labels, t_ids, t_logprobs, t_mask = inputs()
    settings = dict(kd_alpha=0.7, ce_alpha=0.3, temperature=temperature, beta=beta,
                    normalize_topk=normalize)  # fmt: skip
    expected = reference(hidden, weight, labels, t_ids, t_logprobs, t_mask, 0.7, 0.3,
                         temperature, beta, normalize)  # fmt: skip
    expected_grads = torch.autograd.grad(expected, (hidden, weight))
    loss, parts = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, chunk_tokens=7,
                          **settings)  # fmt: skip
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(torch.autograd.grad(loss, (hidden, weight)), expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert set(parts) == {"kd_loss", "ce_loss"}


def test_chunking_changes_nothing_and_a_perfect_student_has_no_kd():
    hidden, weight, labels, t_ids, t_logprobs, t_mask = inputs()
    settings = dict(kd_alpha=1.0, ce_alpha=0.0)
    one, _ = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, chunk_tokens=0, **settings)
    many, _ = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, chunk_tokens=3, **settings)
    torch.testing.assert_close(one, many)
    with torch.no_grad():  # the teacher's top-k are the student's own log-probabilities
        own = torch.log_softmax(hidden @ weight.T, -1)
    shifted = torch.zeros_like(own[..., :5])
    shifted[:, 1:] = own[:, :-1].gather(-1, t_ids[:, 1:])
    zero, _ = kd_loss(hidden, weight, labels, t_ids, shifted, torch.ones_like(t_mask), **settings)
    assert abs(zero.item()) < 1e-6


def test_no_logits_tensor_is_kept_for_backward():
    tokens, vocab, k = 4096, 4096, 8
    hidden = torch.randn(1, tokens, 16, requires_grad=True)
    weight = torch.randn(vocab, 16, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))
    ids = torch.randint(0, vocab, (1, tokens, k))
    logprobs = torch.log_softmax(torch.randn(1, tokens, k), -1)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        kd_loss(hidden, weight, labels, ids, logprobs, torch.ones(1, tokens, dtype=torch.bool),
                kd_alpha=0.9, ce_alpha=0.1, chunk_tokens=512)  # fmt: skip
    assert saved and max(saved) < tokens * vocab / 8


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_soft_capped_logits_match_the_autograd_reference(beta, row_kernels):
    hidden, weight, labels, t_ids, t_logprobs, t_mask = inputs(seed=3)
    with torch.no_grad():
        weight.mul_(4)  # logits large enough for the cap to bite
    settings = dict(kd_alpha=0.6, ce_alpha=0.4, temperature=1.5, beta=beta, softcap=5.0)
    fused, _ = kd_loss(
        hidden, weight, labels, t_ids, t_logprobs, t_mask, chunk_tokens=9, **settings
    )
    naive, _ = kd_loss(
        hidden, weight, labels, t_ids, t_logprobs, t_mask, chunk_tokens=0, **settings
    )
    uncapped, _ = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, chunk_tokens=0,
                          **{**settings, "softcap": None})  # fmt: skip
    assert abs(naive.item() - uncapped.item()) > 1e-2
    torch.testing.assert_close(fused, naive, rtol=1e-5, atol=1e-6)
    for got, want in zip(torch.autograd.grad(fused, (hidden, weight)),
                         torch.autograd.grad(naive, (hidden, weight))):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_evaluation_computes_the_loss_without_gradient_buffers(row_kernels):
    hidden, weight, labels, t_ids, t_logprobs, t_mask = inputs()
    with torch.no_grad():
        evaluated, _ = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, kd_alpha=0.9,
                               ce_alpha=0.1, chunk_tokens=7)  # fmt: skip
    trained, _ = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, kd_alpha=0.9,
                         ce_alpha=0.1, chunk_tokens=7)  # fmt: skip
    torch.testing.assert_close(evaluated, trained.detach())


def test_bfloat16_logits_give_the_float32_loss_and_gradients_within_bf16_rounding(row_kernels):
    hidden, weight, labels, t_ids, t_logprobs, t_mask = inputs(seed=5, k=8, vocab=300)
    settings = dict(kd_alpha=0.9, ce_alpha=0.1, temperature=2.0, beta=0.5, chunk_tokens=16)
    exact, _ = kd_loss(hidden, weight, labels, t_ids, t_logprobs, t_mask, **settings)
    exact_grads = torch.autograd.grad(exact, (hidden, weight))
    half_hidden = hidden.detach().bfloat16().requires_grad_(True)
    half_weight = weight.detach().bfloat16().requires_grad_(True)
    rounded, _ = kd_loss(half_hidden, half_weight, labels, t_ids, t_logprobs, t_mask, **settings)
    torch.testing.assert_close(rounded.float(), exact, rtol=2e-2, atol=2e-2)
    for got, want in zip(torch.autograd.grad(rounded, (half_hidden, half_weight)), exact_grads):
        assert got.dtype == torch.bfloat16
        assert (got.float() - want).norm() / want.norm() < 3e-2
