"""SonicMoE: transformers dispatches ``sonicmoe`` to the ``kernels-community/sonic-moe`` kernel
(loaded through the ``kernels`` package); check that it can run here before the model loads."""

from __future__ import annotations

from ftcore.errors import FtcoreError


def check_sonicmoe() -> None:
    """An error that says why SonicMoE cannot run here (GPU generation, packages, versions)."""
    import torch

    if not torch.cuda.is_available():
        raise FtcoreError("use_sonicmoe needs a CUDA GPU (Hopper or newer); none is visible")
    major, minor = torch.cuda.get_device_capability()
    if major < 9:
        raise FtcoreError(
            f"use_sonicmoe needs a Hopper GPU or newer (compute capability 9.0+); "
            f"{torch.cuda.get_device_name()} is {major}.{minor}: use use_scattermoe instead"
        )
    from transformers.integrations.sonicmoe import is_sonicmoe_loadable

    try:
        is_sonicmoe_loadable(raise_error=True)
    except Exception as error:
        raise FtcoreError(
            f"use_sonicmoe cannot load the SonicMoE kernel here: {error} (it needs the kernels "
            "and nvidia-cutlass-dsl packages and the kernels-community/sonic-moe kernel); use "
            "use_scattermoe instead"
        ) from None
