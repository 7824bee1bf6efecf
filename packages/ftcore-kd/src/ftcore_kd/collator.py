"""Batches with the teacher's top-k: the core's padding (or packed) batch plus the KD fields."""

from __future__ import annotations

from typing import Any

from ftcore_kd.data import KD_FEATURES


class KDCollator:
    """Wraps the core collator; pads ``kd_*`` fields to the batch's length and k."""

    def __init__(self, base: Any, pad_to_multiple_of: int | None = None):
        self.base = base
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np
        import torch

        plain = [{k: v for k, v in f.items() if k not in KD_FEATURES} for f in features]
        batch = self.base(plain)
        if "kd_token_ids" not in features[0]:
            return batch  # evaluation data of another type
        width = batch["input_ids"].shape[1]
        k = max(len(f["kd_token_ids"][0]) for f in features if f["kd_token_ids"])
        ids = torch.zeros(len(features), width, k, dtype=torch.long)
        logprobs = torch.full((len(features), width, k), float("-inf"))
        mask = torch.zeros(len(features), width, dtype=torch.bool)
        for index, feature in enumerate(features):
            length = len(feature["kd_mask"])
            if not length:
                continue
            # through numpy: several times faster than torch.tensor on nested lists
            rows = torch.from_numpy(np.asarray(feature["kd_token_ids"], dtype=np.int64))
            ids[index, :length, : rows.shape[1]] = rows
            logprobs[index, :length, : rows.shape[1]] = torch.from_numpy(
                np.asarray(feature["kd_logprobs"], dtype=np.float32)
            )
            mask[index, :length] = torch.from_numpy(np.asarray(feature["kd_mask"], dtype=bool))
        batch.update(kd_token_ids=ids, kd_logprobs=logprobs, kd_mask=mask)
        return batch
