"""The batched scan on a CUDA GPU gives the CPU's values (skipped without a GPU)."""

import pytest
import torch

from ftcore_spectrum.snr import scan_snr


@pytest.mark.gpu
def test_gpu_scan_matches_cpu_scan():
    generator = torch.Generator().manual_seed(0)
    matrices = [(f"m{i}", torch.randn(256, 512, generator=generator)) for i in range(8)]
    matrices += [(f"n{i}", torch.randn(512, 128, generator=generator)) for i in range(4)]
    on_gpu = scan_snr(matrices, device="cuda", batch_bytes=256 * 512 * 4 * 3)
    on_cpu = scan_snr(matrices, device="cpu")
    assert on_gpu.keys() == on_cpu.keys()
    for name in on_cpu:
        assert on_gpu[name] == pytest.approx(on_cpu[name], rel=1e-3)
