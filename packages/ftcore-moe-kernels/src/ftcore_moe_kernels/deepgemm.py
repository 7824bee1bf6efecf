"""transformers' ``deepgemm`` experts implementation: why it cannot run here, before any weights
load (its own error comes at the first forward)."""

from __future__ import annotations

from ftcore.errors import FtcoreError

_FALLBACK = "use experts_implementation: grouped_mm (transformers' default) instead"


def check_deepgemm() -> None:
    """An error that says why transformers' DeepGEMM experts kernel cannot run here."""
    import torch

    if not torch.cuda.is_available():
        raise FtcoreError(
            f"experts_implementation: deepgemm needs a CUDA GPU; none is visible: {_FALLBACK}"
        )
    from transformers.integrations.deepgemm import is_deepgemm_loadable

    try:
        is_deepgemm_loadable(raise_error=True)
    except Exception as error:  # no kernels package, an older GPU, no nvcc, ...
        raise FtcoreError(
            f"experts_implementation: deepgemm cannot run here: {error}; {_FALLBACK}"
        ) from None
