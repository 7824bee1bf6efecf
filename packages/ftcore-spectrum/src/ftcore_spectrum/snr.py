"""Signal-to-noise ratio of weight matrices, as Spectrum defines it.

For a matrix ``W`` (``n x m``) with singular values ``S``:

* noise scale ``sigma = IQR(S) / 1.349`` (the interquartile range of a normal distribution);
* Marchenko-Pastur edge ``threshold = sigma * (1 + sqrt(beta))`` with ``beta = min(n, m) / max(n, m)``;
* ``snr = sum(S > threshold) / sum(S <= threshold)`` over the singular values normalised by the
  largest (a noise sum of 0 counts as 1).

Spectrum's own scanner divides that ratio once more by ``max(S)``. That makes the score fall as the
signal grows (a planted rank-4 signal in noise then scores below the noise alone), so the ratio here
is kept free of the matrix's scale. Rankings are made within one results file, so files written by
Spectrum's scanner still select by their own values.

Matrices of one shape are decomposed together, on the GPU when there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def snr_from_singular_values(values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """SNR of each row of ``values`` (singular values, descending) of matrices of ``shape``."""
    values = values.double()
    q1 = torch.quantile(values, 0.25, dim=-1)
    q3 = torch.quantile(values, 0.75, dim=-1)
    sigma = (q3 - q1) / 1.349
    rows, cols = shape
    beta = min(rows, cols) / max(rows, cols)
    threshold = (sigma * (1 + beta**0.5)).unsqueeze(-1)
    largest = values.max(dim=-1, keepdim=True).values
    normalised = values / largest
    signal = torch.where(values > threshold, normalised, 0.0).sum(-1)
    noise = torch.where(values <= threshold, normalised, 0.0).sum(-1)
    noise = torch.where(noise > 0, noise, torch.ones_like(noise))
    return signal / noise


def matrix_snr(weight: torch.Tensor) -> float:
    """SNR of one weight matrix."""
    values = torch.linalg.svdvals(weight.detach().float())
    return float(snr_from_singular_values(values.unsqueeze(0), tuple(weight.shape))[0])


def scan_snr(
    matrices: Iterable[tuple[str, torch.Tensor]],
    device: str | torch.device | None = None,
    batch_bytes: int = 1 << 30,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, float]:
    """SNR of every named 2-D matrix; same-shaped matrices go through ``svdvals`` in batches.

    :param progress: called with the number of matrices done after each batch.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    by_shape: dict[tuple[int, int], list[tuple[str, torch.Tensor]]] = {}
    for name, weight in matrices:
        by_shape.setdefault(tuple(weight.shape), []).append((name, weight))
    results: dict[str, float] = {}
    for shape, items in by_shape.items():
        per_batch = max(1, batch_bytes // (shape[0] * shape[1] * 4))
        for start in range(0, len(items), per_batch):
            chunk = items[start : start + per_batch]
            stacked = torch.stack([w.detach().to(device, torch.float32) for _, w in chunk])
            values = torch.linalg.svdvals(stacked)
            for (name, _), snr in zip(chunk, snr_from_singular_values(values, shape).tolist()):
                results[name] = snr
            if progress is not None:
                progress(len(chunk))
    return results
