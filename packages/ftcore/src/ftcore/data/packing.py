"""Sample packing: several tokenized examples share one ``sequence_len`` row.

Examples are bin-packed (first-fit decreasing) into rows of at most ``sequence_len`` tokens. Each
packed row carries ``position_ids`` that restart at 0 for every example and no ``attention_mask``:
transformers then keeps attention inside each example (flash-attention varlen where installed, a
block-diagonal causal mask for SDPA, eager and flex attention), so a packed batch computes the same
loss as the examples one by one.
"""

from __future__ import annotations

from typing import Any

from ftcore.data.strategies import IGNORE_INDEX


def pack_lengths(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into bins whose lengths sum to at most ``capacity``.

    First-fit decreasing: longest first, each into the first bin it fits. Deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    space: list[int] = []
    for index in order:
        size = lengths[index]
        if size > capacity:
            raise ValueError(
                f"example {index} has {size} tokens, more than the capacity {capacity}"
            )
        for slot, free in enumerate(space):
            if size <= free:
                bins[slot].append(index)
                space[slot] -= size
                break
        else:
            bins.append([index])
            space.append(capacity - size)
    return bins


def packing_efficiency(lengths: list[int], bins: list[list[int]], capacity: int) -> float:
    """Share of the packed rows' tokens that are real tokens (1.0: no padding at all)."""
    return sum(lengths) / (len(bins) * capacity) if bins else 0.0


def pack_dataset(dataset: Any, capacity: int) -> tuple[Any, float]:
    """A dataset of packed rows and its efficiency.

    Rows get ``position_ids``; every per-token column (``input_ids``, ``labels``, and any a
    strategy added) is concatenated in the same order. The packing happens on the Arrow columns
    (a take, then new list offsets), so no column is ever turned into Python lists.
    """
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets.table import InMemoryTable

    table = dataset.flatten_indices().data.table
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False)
    bins = pack_lengths(lengths.tolist(), capacity)
    order = np.array([index for members in bins for index in sorted(members)], dtype=np.int64)
    taken = table.take(pa.array(order))
    sizes = np.array([lengths[members].sum() for members in bins], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
    columns = {}
    for name in table.column_names:
        values = taken.column(name).combine_chunks().flatten()
        columns[name] = pa.ListArray.from_arrays(offsets, values)
    positions = np.concatenate(
        [np.arange(lengths[i], dtype=np.int32) for i in order] or [np.zeros(0, np.int32)]
    )
    columns["position_ids"] = pa.ListArray.from_arrays(offsets, pa.array(positions))
    packed = datasets.Dataset(InMemoryTable(pa.table(columns)))
    return packed, packing_efficiency(lengths.tolist(), bins, capacity)


def _pad(
    features: list[dict[str, Any]], fills: dict[str, Any], multiple: int | None
) -> dict[str, Any]:
    """Pad each listed field of every row to the batch width; ``fills[field](pad)`` gives the padding."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    if multiple:
        width = -(-width // multiple) * multiple
    batch: dict[str, list[list[int]]] = {name: [] for name in fills}
    for feature in features:
        pad = width - len(feature["input_ids"])
        for name, fill in fills.items():
            batch[name].append(list(feature[name]) + fill(pad))
    return {name: torch.tensor(rows, dtype=torch.long) for name, rows in batch.items()}


class PaddingCollator:
    """Pads a batch to its longest row: ``input_ids``, ``labels`` (-100), ``attention_mask``."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features]
        return _pad(
            rows,
            {
                "input_ids": lambda pad: [self.pad_token_id] * pad,
                "labels": lambda pad: [IGNORE_INDEX] * pad,
                "attention_mask": lambda pad: [0] * pad,
            },
            self.pad_to_multiple_of,
        )


class PackedCollator(PaddingCollator):
    """Batches packed rows; padding forms its own segment, so no ``attention_mask`` is needed."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return _pad(
            features,
            {
                "input_ids": lambda pad: [self.pad_token_id] * pad,
                "labels": lambda pad: [IGNORE_INDEX] * pad,
                "position_ids": lambda pad: list(range(pad)),
            },
            self.pad_to_multiple_of,
        )
