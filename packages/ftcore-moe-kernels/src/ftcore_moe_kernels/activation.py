"""The experts' gated activation ``act(gate) * up`` in one Triton pass each way.

It applies to the families whose experts use transformers' default gate (the first half of
``gate_up`` is the gate) with SiLU (SwiGLU) or tanh-GELU (GEGLU). Unfused, autograd reads and
writes the expert rows three times forward and five times backward, and keeps ``act(gate)`` for the
backward; the kernels read each row once per pass and keep only ``gate_up``. Other gates (gpt-oss's
clamped one, exact GELU, ...) run the module's own ``_apply_gate``.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from ftcore_moe_kernels.gates import default_gate_activation

SILU, GELU_TANH = 0, 1
_BLOCK_ROWS, _BLOCK_COLS = 16, 256


def fused_kind(experts: Any) -> int | None:
    """``SILU`` or ``GELU_TANH`` when ``experts`` gates with transformers' default gate and one
    of those activations; ``None`` otherwise."""
    return {"silu": SILU, "gelu_tanh": GELU_TANH}.get(default_gate_activation(experts))


def gated_activation(experts: Any, gate_up: torch.Tensor) -> torch.Tensor:
    """``experts._apply_gate(gate_up)``, fused where :func:`fused_kind` allows it."""
    kind = fused_kind(experts)
    if kind is None:
        return experts._apply_gate(gate_up)
    return GatedActivation.apply(gate_up, kind)


@triton.jit
def _activation_and_slope(g, KIND: tl.constexpr):
    """``act(g)`` and ``act'(g)`` in float32."""
    if KIND == 0:  # silu
        s = tl.sigmoid(g)
        value = g * s
        slope = s + value * (1.0 - s)
    else:  # tanh-approximated gelu: 0.5 g (1 + tanh(y)), y = c (g + 0.044715 g^3)
        c = 0.7978845608028654
        # 0.5 (1 + tanh(y)) = sigmoid(2y), without tanh's cancellation near -1
        s = tl.sigmoid(2.0 * c * (g + 0.044715 * g * g * g))
        value = g * s
        slope = s + 2.0 * g * s * (1.0 - s) * c * (1.0 + 0.134145 * g * g)
    return value, slope


@triton.jit
def _gate_and_up(gate_up_ptr, rows, width, stride, BLOCK_ROWS: tl.constexpr,
                 BLOCK_COLS: tl.constexpr):  # fmt: skip
    """This program's block: its row offsets (int64, times ``stride``), columns, mask, and the
    gate and up halves in float32."""
    r = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]
    c = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)[None, :]
    mask = (r < rows) & (c < width)
    row = r.to(tl.int64) * stride
    g = tl.load(gate_up_ptr + row + c, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gate_up_ptr + row + width + c, mask=mask, other=0.0).to(tl.float32)
    return r.to(tl.int64), row, c, mask, g, u


@triton.jit
def _forward_kernel(gate_up_ptr, out_ptr, rows, width, stride_in, stride_out,
                    KIND: tl.constexpr, BLOCK_ROWS: tl.constexpr,
                    BLOCK_COLS: tl.constexpr):  # fmt: skip
    r, _, c, mask, g, u = _gate_and_up(gate_up_ptr, rows, width, stride_in, BLOCK_ROWS, BLOCK_COLS)
    value, _ = _activation_and_slope(g, KIND)
    tl.store(out_ptr + r * stride_out + c, (value * u).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(gate_up_ptr, grad_ptr, dgate_up_ptr, rows, width, stride_in, stride_grad,
                     KIND: tl.constexpr, BLOCK_ROWS: tl.constexpr,
                     BLOCK_COLS: tl.constexpr):  # fmt: skip
    r, row, c, mask, g, u = _gate_and_up(gate_up_ptr, rows, width, stride_in, BLOCK_ROWS,
                                         BLOCK_COLS)  # fmt: skip
    grad = tl.load(grad_ptr + r * stride_grad + c, mask=mask, other=0.0).to(tl.float32)
    value, slope = _activation_and_slope(g, KIND)
    kind = dgate_up_ptr.dtype.element_ty
    tl.store(dgate_up_ptr + row + c, (grad * u * slope).to(kind), mask=mask)  # laid out as gate_up
    tl.store(dgate_up_ptr + row + width + c, (grad * value).to(kind), mask=mask)


def _grid(rows: int, width: int) -> tuple[int, int]:
    return triton.cdiv(rows, _BLOCK_ROWS), triton.cdiv(width, _BLOCK_COLS)


class GatedActivation(torch.autograd.Function):
    """``act(gate_up[:, :I]) * gate_up[:, I:]`` with its backward, each one kernel."""

    @staticmethod
    def forward(ctx: Any, gate_up: torch.Tensor, kind: int) -> torch.Tensor:
        gate_up = gate_up.contiguous()
        rows, width = gate_up.shape[0], gate_up.shape[1] // 2
        out = gate_up.new_empty(rows, width)
        if rows:
            _forward_kernel[_grid(rows, width)](
                gate_up, out, rows, width, gate_up.stride(0), out.stride(0), KIND=kind,
                BLOCK_ROWS=_BLOCK_ROWS, BLOCK_COLS=_BLOCK_COLS,
            )  # fmt: skip
        ctx.save_for_backward(gate_up)
        ctx.kind = kind
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        (gate_up,) = ctx.saved_tensors
        grad = grad.contiguous()
        rows, width = gate_up.shape[0], gate_up.shape[1] // 2
        dgate_up = torch.empty_like(gate_up)
        if rows:
            _backward_kernel[_grid(rows, width)](
                gate_up, grad, dgate_up, rows, width, gate_up.stride(0), grad.stride(0),
                KIND=ctx.kind, BLOCK_ROWS=_BLOCK_ROWS, BLOCK_COLS=_BLOCK_COLS,
            )  # fmt: skip
        return dgate_up, None
