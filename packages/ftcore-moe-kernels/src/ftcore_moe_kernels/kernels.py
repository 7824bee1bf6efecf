"""Triton kernels of the grouped linear layers (see :mod:`ftcore_moe_kernels.grouped`).

``grouped_mm``: each program computes a ``BLOCK_M x BLOCK_N`` tile of output rows that all
belong to one expert; input rows are gathered by index inside the kernel. With LoRA
(``grouped_mm_lora``) the program's epilogue adds ``scaling * low @ B[e].T``, where
``low = x @ A[e].T`` is computed in the same main loop on the input tiles already loaded
(``LORA_FUSION = "loop"``) or by a narrow grouped product before (``"epilogue"``); no delta
weight is formed.

``grouped_weight_grad``: each program accumulates one ``BLOCK_N x BLOCK_K`` tile of one expert's
weight gradient over that expert's rows. Weights are read through their strides, so the
transposed weight of the backward pass is a view, not a copy. Row offsets are int64: a million
sorted rows times a 2,048-wide row passes int32.

The table of row tiles is built on the device (no host sync per call), once for consecutive
products over the same routing: the grid is sized for the most tiles the rows can need,
``rows / BLOCK_M + experts``, and the programs past the real tiles return at once. Tile widths
and pipelining are autotuned per problem shape on the GPU.

``TILE_ORDER`` says which output tiles run side by side. ``spread``: a column band of ``grouped_mm``
runs down every tile of rows, and one weight-gradient tile runs for every expert. ``grouped``: a
tile of rows runs across all its columns, and one expert's weight-gradient tiles run together, so
that the rows and the expert weight they share are read from L2 rather than from memory. ``grouped``
is the default: on an H200 it was 4-7 % faster per experts block in every case timed.
"""

from __future__ import annotations

import inspect
import os
import weakref

import torch
import triton
import triton.language as tl


def _setting(name: str, default: str, choices: tuple[str, ...]) -> str:
    """A tuning setting from the environment."""
    value = os.environ.get(name, default)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


#: Rows per tile (each tile belongs to one expert); FTCORE_MOE_BLOCK_M overrides it for tuning.
BLOCK_M = int(_setting("FTCORE_MOE_BLOCK_M", "128", ("16", "32", "64", "128", "256")))

#: Where the LoRA kernel multiplies the input by ``A[e]``: ``loop`` (in the main loop, on the input
#: tiles already loaded) or ``epilogue`` (a narrow grouped product first; the main loop stays the
#: plain kernel's). Either way ``B[e]`` is applied in the epilogue. FTCORE_MOE_LORA_FUSION overrides
#: it for tuning.
LORA_FUSION = _setting("FTCORE_MOE_LORA_FUSION", "loop", ("loop", "epilogue"))

#: Which output tiles run side by side (see the module docstring); FTCORE_MOE_TILE_ORDER overrides
#: it for tuning.
TILE_ORDER = _setting("FTCORE_MOE_TILE_ORDER", "grouped", ("grouped", "spread"))


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision``: float32 products use TF32 only where torch's matmuls
    would (``tf32: true``, ``torch.set_float32_matmul_precision("high")``); Triton would always.
    Other dtypes are unaffected."""
    if dtype != torch.float32:
        return "tf32"
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):  # torch before 2.9
        return "tf32" if matmul.allow_tf32 else "ieee"
    # matmul's own setting (which the legacy API sets too), else the global one (transformers'
    # `tf32` sets that), else torch's default
    for setting in (matmul.fp32_precision, torch.backends.fp32_precision):
        if setting in ("tf32", "ieee"):
            return setting
    return "ieee"


def _configs(names: tuple[str, ...], shapes: list[tuple[int, ...]]) -> list[triton.Config]:
    """One config per ``(*block sizes named by names, num_warps, num_stages)``."""
    if os.environ.get("TRITON_INTERPRET") == "1":  # the CPU tests: one small shape
        # N and K tiles of different widths, so that a mix-up of the two shows
        small = {"BLOCK_N": 32, "BLOCK_K": 16, "BLOCK_M": 16}
        shapes = [(*(small[name] for name in names), 1, 1)]
    return [triton.Config(dict(zip(names, shape)), num_warps=shape[-2], num_stages=shape[-1])
            for shape in shapes]  # fmt: skip


#: Triton 3.4+ keeps autotuning results in its cache folder, so a machine's later runs skip the
#: tuning (about half a minute).
_AUTOTUNE_CACHE = (
    {"cache_results": True}
    if "cache_results" in inspect.signature(triton.autotune).parameters
    else {}
)

#: Everything a tile's best shape depends on; the tuning cache outlives the process, so BLOCK_M
#: (an environment setting) is in it too.
_MM_KEY = ["N", "K", "GATHER", "LORA", "LOW_IN_LOOP", "BLOCK_M", "BLOCK_R", "GROUPED"]
_MM_CONFIGS = _configs(("BLOCK_N", "BLOCK_K"), [
    (64, 32, 4, 3), (128, 64, 4, 3), (128, 64, 8, 4), (64, 64, 4, 4), (128, 32, 4, 4),
    (128, 64, 8, 3), (256, 64, 8, 3), (128, 128, 8, 3),
])  # fmt: skip
# The weight gradient sums over an expert's rows BLOCK_M at a time (its own step, not the tiles'
# height): a few hundred rows per expert make short loops, where deeper pipelines pay.
_WGRAD_CONFIGS = _configs(("BLOCK_N", "BLOCK_K", "BLOCK_M"), [
    (64, 64, 128, 4, 3), (128, 64, 128, 4, 3), (128, 128, 128, 8, 3), (64, 128, 128, 4, 4),
    (256, 64, 64, 8, 3), (128, 128, 64, 8, 4), (128, 128, 32, 4, 5), (128, 64, 64, 4, 4),
    (256, 128, 64, 8, 3), (128, 256, 64, 8, 3),
])  # fmt: skip


@triton.jit
def _source_rows(gather_ptr, rows, row_mask, GATHER: tl.constexpr):
    """The input row each of ``rows`` reads: gathered by index, or the row itself."""
    if GATHER:
        source = tl.load(gather_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    else:
        source = rows.to(tl.int64)
    return source


@triton.autotune(configs=_MM_CONFIGS, key=_MM_KEY, **_AUTOTUNE_CACHE)
@triton.jit
def _grouped_mm_kernel(
    x_ptr, w_ptr, y_ptr, gather_ptr, block_expert_ptr, block_start_ptr, block_end_ptr,
    a_ptr, b_ptr, low_ptr, scaling, N, K, R, row_tiles,
    stride_xm, stride_xk, stride_we, stride_wn, stride_wk, stride_ym, stride_yn,
    stride_ae, stride_ar, stride_ak, stride_be, stride_bn, stride_br, stride_lm, stride_lr,
    GATHER: tl.constexpr, LORA: tl.constexpr, LOW_IN_LOOP: tl.constexpr, GROUPED: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    if GROUPED:  # a tile of rows across all its columns
        column_tiles = tl.cdiv(N, BLOCK_N)
        block, column_tile = pid // column_tiles, pid % column_tiles
    else:  # a column band down every tile of rows
        block, column_tile = pid % row_tiles, pid // row_tiles
    start = tl.load(block_start_ptr + block)
    end = tl.load(block_end_ptr + block)
    if start >= end:  # past the last real tile
        return
    expert = tl.load(block_expert_ptr + block).to(tl.int64)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < end
    source = _source_rows(gather_ptr, rows, row_mask, GATHER)
    rows = rows.to(tl.int64)
    cols = column_tile * BLOCK_N + tl.arange(0, BLOCK_N)
    inner = tl.arange(0, BLOCK_K)
    ranks = tl.arange(0, BLOCK_R)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    low = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)  # LoRA in the loop: x @ a[e].T
    for k0 in range(0, K, BLOCK_K):
        k = k0 + inner
        x = tl.load(x_ptr + source[:, None] * stride_xm + k[None, :] * stride_xk,
                    mask=row_mask[:, None] & (k[None, :] < K), other=0.0)  # fmt: skip
        w = tl.load(w_ptr + expert * stride_we + cols[None, :] * stride_wn + k[:, None] * stride_wk,
                    mask=(cols[None, :] < N) & (k[:, None] < K), other=0.0)  # fmt: skip
        acc += tl.dot(x, w, input_precision=PRECISION)
        if LORA and LOW_IN_LOOP:
            a = tl.load(a_ptr + expert * stride_ae + ranks[None, :] * stride_ar + k[:, None] * stride_ak,
                        mask=(ranks[None, :] < R) & (k[:, None] < K), other=0.0)  # fmt: skip
            low += tl.dot(x, a, input_precision=PRECISION)
    if LORA:  # the epilogue adds scaling * low @ b[e].T
        low_rows = low_ptr + rows[:, None] * stride_lm + ranks[None, :] * stride_lr
        low_mask = row_mask[:, None] & (ranks[None, :] < R)
        if LOW_IN_LOOP:
            low = low.to(low_ptr.dtype.element_ty)
            if column_tile == 0:  # one column of programs keeps it for the backward
                tl.store(low_rows, low, mask=low_mask)
        else:
            low = tl.load(low_rows, mask=low_mask, other=0.0)
        b = tl.load(b_ptr + expert * stride_be + cols[None, :] * stride_bn + ranks[:, None] * stride_br,
                    mask=(cols[None, :] < N) & (ranks[:, None] < R), other=0.0)  # fmt: skip
        acc += scaling * tl.dot(low, b, input_precision=PRECISION)
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :] * stride_yn,
             acc.to(y_ptr.dtype.element_ty), mask=row_mask[:, None] & (cols[None, :] < N))  # fmt: skip


@triton.autotune(configs=_WGRAD_CONFIGS, key=["N", "K", "GATHER", "GROUPED"], **_AUTOTUNE_CACHE)
@triton.jit
def _grouped_weight_grad_kernel(
    x_ptr, g_ptr, dw_ptr, gather_ptr, offsets_ptr, scale, N, K,
    stride_xm, stride_xk, stride_gm, stride_gn, stride_de, stride_dn, stride_dk,
    GATHER: tl.constexpr, GROUPED: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    if GROUPED:  # the grid is (K tiles, N tiles, experts): one expert's tiles run together
        expert, column_tile, inner_tile = tl.program_id(2), tl.program_id(1), tl.program_id(0)
    else:  # (experts, N tiles, K tiles): one tile runs for every expert
        expert, column_tile, inner_tile = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    start = tl.load(offsets_ptr + expert)
    end = tl.load(offsets_ptr + expert + 1)
    cols = column_tile * BLOCK_N + tl.arange(0, BLOCK_N)
    inner = inner_tile * BLOCK_K + tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for m0 in range(start, end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_mask = rows < end
        source = _source_rows(gather_ptr, rows, row_mask, GATHER)
        g = tl.load(g_ptr + rows[:, None].to(tl.int64) * stride_gm + cols[None, :] * stride_gn,
                    mask=row_mask[:, None] & (cols[None, :] < N), other=0.0)  # fmt: skip
        x = tl.load(x_ptr + source[:, None] * stride_xm + inner[None, :] * stride_xk,
                    mask=row_mask[:, None] & (inner[None, :] < K), other=0.0)  # fmt: skip
        acc += tl.dot(tl.trans(g), x, input_precision=PRECISION)
    expert64 = expert.to(tl.int64)
    tl.store(dw_ptr + expert64 * stride_de + cols[:, None] * stride_dn + inner[None, :] * stride_dk,
             (acc * scale).to(dw_ptr.dtype.element_ty), mask=(cols[:, None] < N) & (inner[None, :] < K))  # fmt: skip


def _blocks(offsets: torch.Tensor, rows: int, block_m: int):
    """Per tile of rows: its expert, first row and end row (tiles never span two experts).

    Computed on the device for ``rows / block_m + experts`` tiles, the most there can be; the
    unused tail has ``start == end``.
    """
    experts = offsets.numel() - 1
    counts = offsets[1:] - offsets[:-1]
    first_tile = torch.zeros_like(offsets)
    first_tile[1:] = torch.cumsum((counts + block_m - 1) // block_m, 0)
    tile = torch.arange(rows // block_m + experts, device=offsets.device)
    expert = (torch.searchsorted(first_tile[1:], tile, right=True)).clamp_max(experts - 1)
    start = offsets[expert] + (tile - first_tile[expert]) * block_m
    end = offsets[expert + 1]
    start = torch.minimum(start, end)  # tiles past the last real one: empty
    return expert.to(torch.int32), start.to(torch.int32), end.to(torch.int32)


#: The last tile table built, with the ``offsets`` tensor (held weakly), row count and tile height
#: it was built for. An MoE block's two forward products share one ``offsets`` tensor, and so do
#: its two input-gradient products; a table is 25 torch calls, 21 of them kernel launches.
_last_table: tuple[weakref.ref, int, int, tuple] | None = None


def _tile_table(offsets: torch.Tensor, rows: int, block_m: int):
    """:func:`_blocks`, built once for consecutive products over the same ``offsets`` tensor."""
    global _last_table
    last = _last_table
    if last is not None and last[0]() is offsets and last[1:3] == (rows, block_m):
        return last[3]
    table = _blocks(offsets, rows, block_m)
    _last_table = (weakref.ref(offsets), rows, block_m, table)
    return table


def grouped_mm(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor,
               gather: torch.Tensor | None, rows: int) -> torch.Tensor:  # fmt: skip
    """``y[r] = x[src(r)] @ weight[e(r)].T`` for ``rows`` expert-sorted rows; ``weight`` [E, N, K]."""
    return _launch_grouped_mm(x, weight, offsets, gather, rows, None)[0]


def grouped_mm_lora(x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                    scaling: float, offsets: torch.Tensor, gather: torch.Tensor | None,
                    rows: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`grouped_mm` plus ``scaling * (x[src(r)] @ a[e].T) @ b[e].T`` in the same kernel
    (``a`` [E, R, K], ``b`` [E, N, R]); also returns the low-rank rows ``x[src(r)] @ a[e].T``."""
    return _launch_grouped_mm(x, weight, offsets, gather, rows, (a, b, scaling))


def _launch_grouped_mm(x, weight, offsets, gather, rows, lora):
    n, k = weight.shape[1], weight.shape[2]
    y = x.new_empty(rows, n)
    a, b, scaling = lora if lora is not None else (weight, weight, 0.0)  # unread without LoRA
    rank = a.shape[1] if lora is not None else 0
    if rows == 0:
        return y, x.new_empty(rows, rank)
    low_in_loop = lora is not None and LORA_FUSION == "loop"
    if lora is not None and not low_in_loop:  # the epilogue mode: x @ A[e] first
        low = _launch_grouped_mm(x, a, offsets, gather, rows, None)[0]
    else:
        low = x.new_empty(rows, rank)
    tile_experts, starts, ends = _tile_table(offsets, rows, BLOCK_M)
    row_tiles = tile_experts.numel()
    grid = lambda meta: (row_tiles * triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    _grouped_mm_kernel[grid](
        x, weight, y, gather if gather is not None else starts, tile_experts, starts, ends,
        a, b, low if lora is not None else y, scaling, n, k, rank, row_tiles,
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), weight.stride(2),
        y.stride(0), y.stride(1), a.stride(0), a.stride(1), a.stride(2),
        b.stride(0), b.stride(1), b.stride(2), low.stride(0), low.stride(1),
        GATHER=gather is not None, LORA=lora is not None, LOW_IN_LOOP=low_in_loop,
        GROUPED=TILE_ORDER == "grouped", PRECISION=dot_precision(x.dtype), BLOCK_M=BLOCK_M,
        BLOCK_R=max(16, triton.next_power_of_2(rank)),
    )  # fmt: skip
    return y, low


def grouped_weight_grad(x: torch.Tensor, grad: torch.Tensor, offsets: torch.Tensor,
                        gather: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype,
                        scale: float = 1.0) -> torch.Tensor:  # fmt: skip
    """``dweight[e] = scale * grad[rows of e].T @ x[src(rows of e)]``, summed in float32 and
    stored in ``dtype``; ``shape`` is [E, N, K]. Every tile is written (zeros for an expert
    without rows)."""
    n_experts, n, k = shape
    dweight = torch.empty(shape, dtype=dtype, device=x.device)
    offsets32 = offsets.to(torch.int32)
    grouped = TILE_ORDER == "grouped"

    def grid(meta):
        column_tiles, inner_tiles = triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(k, meta["BLOCK_K"])
        if grouped:
            return inner_tiles, column_tiles, n_experts
        return n_experts, column_tiles, inner_tiles

    _grouped_weight_grad_kernel[grid](
        x, grad, dweight, gather if gather is not None else offsets32, offsets32, scale, n, k,
        x.stride(0), x.stride(1), grad.stride(0), grad.stride(1),
        dweight.stride(0), dweight.stride(1), dweight.stride(2), GATHER=gather is not None,
        GROUPED=grouped, PRECISION=dot_precision(x.dtype),
    )  # fmt: skip
    return dweight
