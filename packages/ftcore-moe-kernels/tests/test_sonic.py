"""SonicMoE's CPU side: which experts it can run, and its errors before any model loads."""

from __future__ import annotations

import pytest
import torch
from test_activation import experts_of
from test_models import tiny

from ftcore.errors import FtcoreError
from ftcore_moe_kernels import sonic
from ftcore_moe_kernels.gates import default_gate_activation


def test_the_gate_activation_of_each_family():
    assert default_gate_activation(experts_of(tiny("qwen3_moe"))) == "silu"
    assert default_gate_activation(experts_of(tiny("gemma4_text"))) == "gelu_tanh"
    experts = experts_of(tiny("mixtral"))
    experts.act_fn = torch.nn.ReLU()
    assert default_gate_activation(experts) == "relu"
    experts.act_fn = torch.nn.GELU()
    assert default_gate_activation(experts) == "gelu"
    experts._apply_gate = lambda gate_up: gate_up  # a gate of its own: nothing to fuse
    assert default_gate_activation(experts) is None


def test_sonic_moe_runs_swiglu_and_tanh_geglu_experts_only():
    assert sonic.unsupported_reason(experts_of(tiny("qwen3_moe"))) is None
    assert (
        sonic.unsupported_reason(experts_of(tiny("gemma4_text"))) is None
    )  # quack's GeGLU is tanh
    experts = experts_of(tiny("qwen3_moe"))
    for act in (torch.nn.GELU(), torch.nn.ReLU()):  # exact GELU, ReLU: sonic-moe has no kernel
        experts.act_fn = act
        assert "not SwiGLU or tanh-GeGLU" in sonic.unsupported_reason(experts)


def test_with_the_package_a_model_sonic_moe_cannot_run_is_refused(monkeypatch):
    from ftcore_moe_kernels.models import apply_experts_implementation

    monkeypatch.setattr(sonic, "has_sonicmoe_package", lambda: True)
    model = tiny("gpt_oss", head_dim=16, sliding_window=64, layer_types=["full_attention"],
                 num_hidden_layers=1)  # fmt: skip
    with pytest.raises(FtcoreError, match="sonicmoe does not support the experts of gpt_oss"):
        apply_experts_implementation(model, "sonicmoe")


def test_without_the_package_a_gate_the_hub_kernel_would_change_is_refused(monkeypatch):
    """transformers' Hub SonicMoE takes the gate from ``hidden_act`` (``silu`` without one), not
    from the experts: Gemma 4 gates with tanh-GELU and has no ``hidden_act``."""
    from ftcore_moe_kernels.models import apply_experts_implementation

    monkeypatch.setattr(sonic, "has_sonicmoe_package", lambda: False)
    assert sonic.hub_unsupported_reason(experts_of(tiny("qwen3_moe"))) is None
    with pytest.raises(FtcoreError, match=r"gate is gelu_tanh; .* hidden_act='silu' instead"):
        apply_experts_implementation(tiny("gemma4_text"), "sonicmoe")
    experts = experts_of(tiny("qwen3_moe"))
    experts.config.hidden_act = "gelu"  # the Hub kernel: quack's tanh-GeGLU; the experts: SiLU
    assert "gate is silu" in sonic.hub_unsupported_reason(experts)


@pytest.fixture
def hopper(monkeypatch):
    """A CUDA Hopper GPU as far as the check can tell (the checks after it are the point)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))


def test_a_sonic_moe_package_that_does_not_import_is_named(hopper, tmp_path, monkeypatch):
    package = tmp_path / "sonicmoe"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('cutlass.cute is missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FtcoreError, match="installed but does not import: ImportError: cutlass"):
        sonic.check_sonicmoe()


def test_without_the_package_the_error_says_what_to_install(hopper):
    if sonic.has_sonicmoe_package():
        pytest.skip("sonic-moe is installed here")
    with pytest.raises(FtcoreError, match=r"install the sonic-moe package.*use_scattermoe"):
        sonic.check_sonicmoe()


def test_with_the_package_the_slow_first_step_is_announced(hopper, monkeypatch, caplog):
    from ftcore_moe_kernels.plugin import MoEKernelsPlugin

    monkeypatch.setattr(sonic, "check_sonicmoe", lambda: None)
    monkeypatch.setattr(sonic, "register", lambda: None)
    monkeypatch.setattr(sonic, "has_sonicmoe_package", lambda: True)
    cfg = type("Cfg", (), {"use_scattermoe": None, "use_sonicmoe": True})()
    with caplog.at_level("WARNING", logger="ftcore"):
        MoEKernelsPlugin().ftcore_pre_model_load(cfg=cfg)
    assert "first training step" in caplog.text and "QUACK_CACHE_DIR" in caplog.text
