"""The chunked reference loss equals the transformers loss on materialised logits, gradients too."""

from __future__ import annotations

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from ftcore.modeling import lm_head_weight
from ftcore_cce.loss import causal_lm_loss


def reference(hidden, weight, labels, softcap=None, num_items_in_batch=None):
    logits = hidden @ weight.T
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return ForCausalLMLoss(
        logits, labels, vocab_size=weight.shape[0], num_items_in_batch=num_items_in_batch
    )


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("num_items_in_batch", [None, 37])
def test_loss_and_gradients_match_the_transformers_loss(softcap, num_items_in_batch):
    torch.manual_seed(0)
    hidden = torch.randn(3, 700, 32, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 32, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 300, (3, 700))
    labels[0, :50] = -100  # a prompt
    labels[2, 600:] = -100  # padding
    expected = reference(hidden, weight, labels, softcap, num_items_in_batch)
    grads = torch.autograd.grad(expected, (hidden, weight))
    got = causal_lm_loss(
        hidden, weight, labels, softcap=softcap, num_items_in_batch=num_items_in_batch
    )
    torch.testing.assert_close(got, expected.float(), rtol=1e-6, atol=1e-6)
    for a, b in zip(torch.autograd.grad(got, (hidden, weight)), grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_shift_labels_are_used_as_given():
    torch.manual_seed(1)
    hidden = torch.randn(2, 10, 8)
    weight = torch.randn(20, 8)
    labels = torch.randint(0, 20, (2, 10))
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    torch.testing.assert_close(
        causal_lm_loss(hidden, weight, None, shift_labels=shifted),
        causal_lm_loss(hidden, weight, labels),
    )


def test_no_logits_tensor_is_kept_for_backward():
    """Saved activations stay far below tokens x vocab: the point of the loss."""
    tokens, vocab, width = 8192, 4096, 16
    hidden = torch.randn(1, tokens, width, requires_grad=True)
    weight = torch.randn(vocab, width, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        causal_lm_loss(hidden, weight, labels)
    assert max(saved) < tokens * vocab / 4


def _sharded_head_rank(rank: int, world: int, store_path: str) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    dist.init_process_group("gloo", store=dist.FileStore(store_path, world), rank=rank,
                            world_size=world)  # fmt: skip
    try:
        mesh = init_device_mesh("cpu", (world,))
        torch.manual_seed(0)
        weight = torch.randn(50, 16)  # the same on every rank
        head = torch.nn.Linear(16, 50, bias=False)
        head.weight = torch.nn.Parameter(distribute_tensor(weight, mesh, [Shard(0)]))
        hidden, labels = _rank_batch(rank)  # different data on each rank
        causal_lm_loss(hidden, lm_head_weight(head), labels).backward()
        grad = head.weight.grad.full_tensor()
        local = []  # what plain data parallelism gives: the mean of the ranks' gradients
        for other in range(world):
            plain = weight.clone().requires_grad_(True)
            other_hidden, other_labels = _rank_batch(other)
            reference(other_hidden, plain, other_labels).backward()
            local.append(plain.grad)
        torch.testing.assert_close(grad, torch.stack(local).mean(0))
        # both ranks reach the teardown together: a rank that closed its connections while the
        # other's were still open once aborted the other (gloo, SIGABRT) in CI
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _rank_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + rank)
    hidden = torch.randn(2, 40, 16, generator=generator)
    return hidden, torch.randint(0, 50, (2, 40), generator=generator)


def test_a_weight_left_sharded_by_fsdp2_is_gathered_and_its_gradient_averaged(tmp_path):
    """Under FSDP2 the lm_head's forward does not run, so its weight arrives as a sharded DTensor:
    two gloo processes with different data get the data-parallel mean gradient on their shards."""
    import torch.multiprocessing as mp

    mp.spawn(_sharded_head_rank, args=(2, str(tmp_path / "store")), nprocs=2, join=True)
