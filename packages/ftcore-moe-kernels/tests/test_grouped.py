"""The Triton grouped linear (run by Triton's interpreter on the CPU) against the torch reference."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
import torch
import triton

from ftcore_moe_kernels import grouped
from ftcore_moe_kernels.experts import sort_by_expert


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Tiles of 16 rows: an expert's rows span several tiles, and the weight gradient sums
    several tiles of rows, as at full size."""
    from ftcore_moe_kernels import kernels

    monkeypatch.setattr(kernels, "BLOCK_M", 16)


@pytest.fixture
def backend(monkeypatch):
    def use(name):
        monkeypatch.setattr(grouped, "BACKEND", name)

    return use


def run(backend_name, backend, x, w, offsets, gather, g, copies=None):
    backend(backend_name)
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    y = grouped.grouped_linear(x, w, offsets, gather, copies)
    dx, dw = torch.autograd.grad(y, (x, w), g)
    return y, dx, dw


@pytest.mark.parametrize("tile_order", ["spread", "grouped"])
@pytest.mark.parametrize("gather", ["copies", "scatter", "none"])
@pytest.mark.parametrize(("tokens", "experts", "top_k"), [(37, 4, 2), (130, 8, 3), (5, 6, 1)])
def test_triton_matches_the_reference_forward_and_backward(backend, gather, tokens, experts, top_k,
                                                           tile_order, monkeypatch):  # fmt: skip
    from ftcore_moe_kernels import kernels

    monkeypatch.setattr(kernels, "TILE_ORDER", tile_order)
    torch.manual_seed(tokens)
    hidden, out = 24, 40
    x = torch.randn(tokens, hidden)
    w = torch.randn(experts, out, hidden)
    index = torch.randint(0, experts, (tokens, top_k))  # some experts get no token
    order = sort_by_expert(index, experts)
    source, copies = order.source, order.rows if gather == "copies" else None
    if gather == "none":
        x, source = x[order.source], None
    g = torch.randn(order.source.numel(), out)
    expected = run("reference", backend, x, w, order.offsets, source, g)  # dx: atomic adds
    got = run("triton", backend, x, w, order.offsets, source, g, copies)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tile_order", ["spread", "grouped"])
def test_every_row_tile_and_every_weight_tile_is_written(backend, tile_order, monkeypatch):
    """17 rows for each of 4 experts need 8 tiles of 16 rows, the table's full size
    (``rows // 16 + experts``); 40 inputs and 72 outputs make several K and N tiles."""
    from ftcore_moe_kernels import kernels

    monkeypatch.setattr(kernels, "TILE_ORDER", tile_order)
    torch.manual_seed(0)
    experts, hidden, out = 4, 40, 72
    order = sort_by_expert((torch.arange(17 * experts) % experts)[:, None], experts)
    x, w = torch.randn(17 * experts, hidden), torch.randn(experts, out, hidden)
    g = torch.randn(17 * experts, out)
    expected = run("reference", backend, x, w, order.offsets, order.source, g)
    got = run("triton", backend, x, w, order.offsets, order.source, g, order.rows)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_each_routing_builds_its_tile_table_once_per_pass(backend, monkeypatch):
    """Two experts blocks, one after the other: each block's two products share its routing's
    offsets, so the forward builds one table per block, and the backward reuses the last block's
    and builds the first's again; the gradients are the reference's."""
    from ftcore_moe_kernels import kernels

    built = []
    build = kernels._blocks
    monkeypatch.setattr(kernels, "_blocks", lambda *args: built.append(args) or build(*args))
    monkeypatch.setattr(kernels, "_last_table", None)
    torch.manual_seed(0)
    tokens, experts, top_k, hidden, inner = 40, 4, 2, 24, 32
    routings = [torch.randint(0, experts, (tokens, top_k)) for _ in range(2)]
    x = torch.randn(tokens, hidden)
    weights = [torch.randn(experts, inner, hidden) / hidden**0.5,
               torch.randn(experts, hidden, inner) / inner**0.5]  # fmt: skip
    g = torch.randn(tokens, hidden)

    def gradients(backend_name):
        backend(backend_name)
        leaves = [t.clone().requires_grad_(True) for t in (x, *weights)]
        hidden_states = leaves[0]
        for index in routings:  # the same weights in both blocks
            order = sort_by_expert(index, experts)
            up = grouped.grouped_linear(hidden_states, leaves[1], order.offsets, order.source,
                                        order.rows)  # fmt: skip
            down = grouped.grouped_linear(up.tanh(), leaves[2], order.offsets)
            hidden_states = down[order.rows].sum(1)
        return torch.autograd.grad(hidden_states, leaves, g)

    expected = gradients("reference")
    assert built == []
    got = gradients("triton")
    assert len(built) == 3
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_the_expert_order_and_its_inverse():
    index = torch.tensor([[2, 0], [0, 1], [2, 2]])
    order = sort_by_expert(index, 4)
    assert order.offsets.tolist() == [0, 2, 3, 6, 6]
    assert index.reshape(-1)[order.pairs].tolist() == [0, 0, 1, 2, 2, 2]
    assert order.source.tolist() == (order.pairs // 2).tolist()
    assert order.pairs[order.rows.reshape(-1)].tolist() == list(range(6))


def test_the_reference_is_one_matmul_per_expert_segment():
    x = torch.arange(12.0).view(4, 3)
    w = torch.stack([torch.eye(3), 2 * torch.eye(3)])
    offsets = torch.tensor([0, 1, 4])
    y = grouped.reference_forward(x, w, offsets.tolist(), torch.tensor([3, 0, 1, 2]))
    torch.testing.assert_close(y, torch.cat([x[3:4], 2 * x[0:3]]))


@pytest.mark.skipif("cache_results" not in inspect.signature(triton.autotune).parameters,
                    reason="Triton before 3.4 does not cache autotuning")  # fmt: skip
def test_the_kernels_keep_their_autotuning_for_later_runs():
    """On a GPU (the interpreter never caches), both kernels' autotuning goes to Triton's cache."""
    code = ("from ftcore_moe_kernels import kernels as k; "
            "print(k._grouped_mm_kernel.cache_results, k._grouped_weight_grad_kernel.cache_results)")  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("", "ieee"),  # torch's default
        ("torch.set_float32_matmul_precision('highest')", "ieee"),
        ("torch.set_float32_matmul_precision('high')", "tf32"),  # the legacy API
        ("torch.backends.cuda.matmul.allow_tf32 = True", "tf32"),
        ("torch.backends.fp32_precision = 'tf32'", "tf32"),  # what transformers' `tf32` sets
        ("torch.backends.cuda.matmul.fp32_precision = 'ieee'; "
         "torch.backends.fp32_precision = 'tf32'", "ieee"),
    ],
)  # fmt: skip
def test_float32_products_use_tf32_only_where_torch_s_matmuls_would(setting, expected):
    # in a process of its own: torch's precision settings are global, and mixing its two APIs
    # makes the legacy getters raise for the rest of the process
    script = (
        "import torch\n"
        "from ftcore_moe_kernels.kernels import dot_precision\n"
        f"{setting}\n"
        "print(dot_precision(torch.float32), dot_precision(torch.bfloat16))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # bf16 keeps Triton's default: input_precision only concerns float32
    assert result.stdout.split() == [expected, "tf32"]
