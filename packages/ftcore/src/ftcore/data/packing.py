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
    strategy added) is concatenated in the same order.
    """
    import datasets

    lengths = [len(ids) for ids in dataset["input_ids"]]
    bins = pack_lengths(lengths, capacity)
    columns = {name: dataset[name] for name in dataset.column_names}
    rows: dict[str, list[list[Any]]] = {name: [] for name in [*columns, "position_ids"]}
    for members in bins:
        packed: dict[str, list[Any]] = {name: [] for name in rows}
        for index in sorted(members):
            for name, values in columns.items():
                packed[name] += values[index]
            packed["position_ids"] += range(lengths[index])
        for name, values in packed.items():
            rows[name].append(values)
    features = datasets.Features(
        {**dataset.features, "position_ids": datasets.Sequence(datasets.Value("int32"))}
    )
    return datasets.Dataset.from_dict(rows, features=features), packing_efficiency(
        lengths, bins, capacity
    )


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
