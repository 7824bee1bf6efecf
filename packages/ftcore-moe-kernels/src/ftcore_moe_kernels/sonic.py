"""SonicMoE: the experts of a MoE block through the ``sonic-moe`` package (CuTe DSL kernels, Hopper
or newer).

Where the package is installed, ``sonicmoe`` in transformers' ExpertsInterface runs it directly
(:func:`sonicmoe_experts_forward`). Without it, transformers' own ``sonicmoe`` implementation
remains, which loads the ``kernels-community/sonic-moe`` kernel from the Hugging Face Hub.
:func:`check_sonicmoe` says, before the model loads, why neither can run here.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ftcore.errors import FtcoreError

NAME = "sonicmoe"
#: The gated activations SonicMoE fuses, named as ``gates.default_gate_activation`` names them
#: (its GeGLU is quack's, with tanh-approximated GELU; its ReGLU has no grouped GEMM yet).
ACTIVATIONS = {"silu": "SWIGLU", "gelu_tanh": "GEGLU"}
_FALLBACK = "use use_scattermoe instead"


def has_sonicmoe_package() -> bool:
    return importlib.util.find_spec("sonicmoe") is not None


def check_sonicmoe() -> None:
    """An error that says why SonicMoE cannot run here (GPU generation, packages, versions)."""
    import torch

    if not torch.cuda.is_available():
        raise FtcoreError("use_sonicmoe needs a CUDA GPU (Hopper or newer); none is visible")
    major, minor = torch.cuda.get_device_capability()
    if major < 9:
        raise FtcoreError(
            f"use_sonicmoe needs a Hopper GPU or newer (compute capability 9.0+); "
            f"{torch.cuda.get_device_name()} is {major}.{minor}: {_FALLBACK}"
        )
    if has_sonicmoe_package():
        try:
            import sonicmoe  # noqa: F401
        except Exception as error:  # its CuTe DSL, quack or torch build does not fit
            raise FtcoreError(
                f"use_sonicmoe: the sonic-moe package is installed but does not import: "
                f"{type(error).__name__}: {error}; reinstall it with the versions of "
                f"nvidia-cutlass-dsl and quack-kernels it pins, or {_FALLBACK}"
            ) from None
        return
    from transformers.integrations.sonicmoe import is_sonicmoe_loadable

    try:
        is_sonicmoe_loadable(raise_error=True)
    except Exception as error:
        raise FtcoreError(
            f"use_sonicmoe cannot run here: {error} (install the sonic-moe package: "
            "pip install 'ftcore-moe-kernels[sonicmoe]', Python 3.12+; or the kernels package "
            f"for the kernels-community/sonic-moe kernel from the Hub); or {_FALLBACK}"
        ) from None


def unsupported_reason(experts: Any) -> str | None:
    """Why the sonic-moe package cannot run an experts module, or ``None``: it needs scattermoe's
    layout (concatenated gate/up projections, no bias) and a gate it fuses."""
    from ftcore_moe_kernels import experts as scattermoe
    from ftcore_moe_kernels.gates import default_gate_activation

    layout = scattermoe.unsupported_reason(experts)
    if layout is None and default_gate_activation(experts) not in ACTIVATIONS:
        return f"{type(experts).__name__} (its gate is not SwiGLU or tanh-GeGLU)"
    return layout


#: The gate transformers' own ``sonicmoe`` (the Hub kernel) computes for each ``hidden_act``, as
#: ``gates.default_gate_activation`` names them (without ``hidden_act`` it takes ``silu``).
HUB_ACTIVATIONS = {"silu": "silu", "gelu": "gelu_tanh"}


def hub_unsupported_reason(experts: Any) -> str | None:
    """Why transformers' Hub SonicMoE kernel would not compute what ``experts`` computes, or
    ``None``. It picks the gate from ``config.hidden_act``, not from the experts' own activation
    (Gemma 4 has no ``hidden_act`` and gates with tanh-GELU, which the Hub path would run as
    SwiGLU)."""
    from ftcore_moe_kernels.experts import quantized_reason
    from ftcore_moe_kernels.gates import default_gate_activation

    if not getattr(experts, "has_gate", True) or not hasattr(experts, "gate_up_proj"):
        return f"{type(experts).__name__} (no gated gate_up_proj)"
    if quantized := quantized_reason(experts):
        return quantized
    hidden_act = str(getattr(getattr(experts, "config", None), "hidden_act", "silu")).lower()
    gate = default_gate_activation(experts)
    if gate is None or HUB_ACTIVATIONS.get(hidden_act) != gate:
        return (
            f"{type(experts).__name__} (its gate is {gate or 'its own'}; without the sonic-moe "
            f"package, transformers' Hub kernel would run hidden_act={hidden_act!r} instead)"
        )
    return None


def sonicmoe_experts_forward(self: Any, hidden_states: Any, top_k_index: Any, top_k_weights: Any):
    """The experts of one MoE block through ``sonicmoe.moe_general_routing_inputs``."""
    import sonicmoe
    import torch
    from sonicmoe.enums import ActivationType

    from ftcore_moe_kernels.gates import default_gate_activation

    tokens, top_k = hidden_states.shape[0], top_k_index.shape[-1]
    # one entry per token-expert pair, token indices ascending (the order sonic-moe requires)
    token_index = torch.arange(tokens, device=hidden_states.device, dtype=torch.int32)
    activation = ActivationType[ACTIVATIONS[default_gate_activation(self)]]
    out, _ = sonicmoe.moe_general_routing_inputs(
        hidden_states,
        top_k_weights.reshape(-1).float(),
        token_index.repeat_interleave(top_k),
        top_k_index.reshape(-1).int(),
        self.gate_up_proj.permute(1, 2, 0),  # [2I, H, E], gate rows then up rows
        None,
        self.down_proj.permute(1, 2, 0),  # [H, I, E]
        None,
        E=self.gate_up_proj.shape[0],
        stream_id=torch.cuda.current_stream(hidden_states.device).cuda_stream,
        activation_type=activation,
        is_inference_mode_enabled=not torch.is_grad_enabled(),
        concat_layout=True,
    )
    return out


def first_step_notice() -> str:
    """What the first training step with the sonic-moe package costs, and where its cache is."""
    try:
        from quack.cache_utils import get_cache_path

        cache = str(get_cache_path())
    except (ImportError, AttributeError):  # a quack without it: name the setting, not a guess
        cache = "quack's cache"
    return (
        "ftcore: sonic-moe compiles and autotunes its GEMM kernels (CuTe DSL) during the first "
        f"training step: about 8 minutes on an H200 with an empty cache. They are cached in {cache} "
        "(set QUACK_CACHE_DIR to keep them elsewhere), so later runs on this machine start in "
        "seconds."
    )


def register() -> None:
    """Run ``sonicmoe`` through the installed sonic-moe package (else transformers' Hub kernel)."""
    if has_sonicmoe_package():
        from transformers.integrations.moe import ExpertsInterface

        ExpertsInterface.register(NAME, sonicmoe_experts_forward)
