"""The SNR against an independent float64 reference, and on planted structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftcore_spectrum.snr import matrix_snr, scan_snr


def reference_snr(matrix: np.ndarray) -> float:
    """Spectrum's definition written with numpy, in float64."""
    values = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    q1, q3 = np.quantile(values, [0.25, 0.75])
    sigma = (q3 - q1) / 1.349
    beta = min(matrix.shape) / max(matrix.shape)
    threshold = sigma * (1 + np.sqrt(beta))
    normalised = values / values.max()
    signal = normalised[values > threshold].sum()
    noise = normalised[values <= threshold].sum() or 1.0
    return signal / noise


@pytest.mark.parametrize("shape", [(64, 64), (96, 32), (32, 128)])
def test_snr_matches_the_reference(shape):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=shape) + 0.3 * rng.normal(size=(shape[0], 3)) @ rng.normal(
        size=(3, shape[1])
    )
    assert matrix_snr(torch.tensor(matrix, dtype=torch.float32)) == pytest.approx(
        reference_snr(matrix), rel=1e-4
    )


def test_planted_low_rank_signal_scores_above_pure_noise():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(128, 128, generator=generator)
    low_rank = torch.randn(128, 4, generator=generator) @ torch.randn(4, 128, generator=generator)
    # From a signal just above the noise edge to a dominant one, the score only grows.
    scores = [matrix_snr(noise + strength * low_rank) for strength in (0.25, 0.5, 1.0, 2.0)]
    assert matrix_snr(noise) < scores[0] < scores[1] < scores[2] < scores[3]
    assert scores[-1] > 2.5 * matrix_snr(noise)


def test_batched_scan_equals_one_by_one():
    generator = torch.Generator().manual_seed(1)
    matrices = [(f"m{i}", torch.randn(48, 32, generator=generator) * (i + 1)) for i in range(5)]
    matrices.append(("other", torch.randn(16, 16, generator=generator)))
    done = []
    batched = scan_snr(matrices, device="cpu", batch_bytes=48 * 32 * 4 * 2, progress=done.append)
    assert sum(done) == 6
    for name, weight in matrices:
        assert batched[name] == pytest.approx(matrix_snr(weight), rel=1e-5)
