"""A local plugin for benchmarks: random pre-tokenized rows instead of a dataset.

``plugins: [benchmarks.random_tokens]``; rows of ``sequence_len`` token ids below the model's
vocabulary, ``BENCH_ROWS`` of them (default 256), seeded.
"""

from __future__ import annotations

import os
from pathlib import Path

from ftcore import hookimpl


@hookimpl
def ftcore_load_datasets(cfg, tokenizer):
    """Random token rows; every token is trained."""
    import datasets
    import torch
    from transformers import AutoConfig

    from ftcore.data.prepare import PreparedData

    vocab = AutoConfig.from_pretrained(cfg.base_model).vocab_size
    rows = int(os.environ.get("BENCH_ROWS", "256"))
    generator = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(0, vocab - 1024, (rows, cfg.sequence_len), generator=generator).tolist()
    train = datasets.Dataset.from_dict({"input_ids": ids, "labels": ids})
    return PreparedData(train, None, "random", Path("/tmp"), False, {"train_rows": rows})
