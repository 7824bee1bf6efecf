"""Which Liger kernels a config asks for, and applying them to a model instance.

Liger patches per model type: ``MODEL_TYPE_TO_APPLY_LIGER_FN[model_type](model=..., rope=...,
rms_norm=..., swiglu|geglu=..., layer_norm=..., fused_linear_cross_entropy=..., cross_entropy=...)``.
An option the family's function does not take is reported, never dropped silently.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")

#: ``liger_*`` key -> the keyword(s) of Liger's apply functions it sets.
KEY_TO_KWARGS = {
    "liger_rope": ("rope",),
    "liger_rms_norm": ("rms_norm",),
    "liger_glu_activation": ("swiglu", "geglu"),
    "liger_layer_norm": ("layer_norm",),
    "liger_fused_linear_cross_entropy": ("fused_linear_cross_entropy",),
    "liger_cross_entropy": ("cross_entropy",),
}
#: Everything Liger's apply functions turn on by default; ftcore passes each explicitly.
_ALL_KWARGS = ("rope", "rms_norm", "swiglu", "geglu", "layer_norm", "fused_linear_cross_entropy",
               "cross_entropy")  # fmt: skip


def apply_functions() -> dict[str, Any]:
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return MODEL_TYPE_TO_APPLY_LIGER_FN


def requested(cfg: Any) -> list[str]:
    """The ``liger_*`` kernel keys set to true."""
    return [key for key in KEY_TO_KWARGS if getattr(cfg, key)]


def plan(cfg: Any, model_type: str) -> tuple[dict[str, bool], list[str]]:
    """Keyword arguments for ``model_type``'s apply function, and the keys it cannot honour."""
    import inspect

    functions = apply_functions()
    if model_type not in functions:
        raise FtcoreError(
            f"liger: Liger has no kernels for model_type {model_type}; supported: "
            f"{', '.join(sorted(functions))}. Remove the liger plugin (or its liger_* keys)"
        )
    accepted = inspect.signature(functions[model_type]).parameters
    kwargs = {name: False for name in _ALL_KWARGS if name in accepted}
    ignored = []
    for key in requested(cfg):
        names = [name for name in KEY_TO_KWARGS[key] if name in accepted]
        if not names:
            ignored.append(key)
        for name in names:
            kwargs[name] = True
    return kwargs, ignored


def apply(cfg: Any, model: Any) -> dict[str, bool]:
    """Apply the requested kernels to ``model``; returns the keyword arguments used."""
    model_type = model.config.model_type
    kwargs, ignored = plan(cfg, model_type)
    for key in ignored:
        log.warning(
            "ftcore: %s has no effect on %s: Liger has no such kernel for it", key, model_type
        )
    apply_functions()[model_type](model=model, **kwargs)
    if cfg.liger_use_token_scaling:
        model.forward = with_token_scaling(model.forward)
    log.info(
        "ftcore: Liger kernels on %s: %s",
        model_type,
        ", ".join(name for name, on in kwargs.items() if on) or "none",
    )
    return kwargs


def with_token_scaling(forward: Any) -> Any:
    """``forward`` that asks Liger's fused linear cross entropy to scale tokens by probability."""

    @functools.wraps(forward)
    def scaled(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("use_token_scaling", True)
        return forward(*args, **kwargs)

    scaled.ftcore_token_scaling = True
    return scaled
