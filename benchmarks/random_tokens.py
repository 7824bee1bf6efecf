"""A local plugin for benchmarks: random pre-tokenized rows instead of a dataset.

``plugins: [benchmarks.random_tokens]``; rows of ``sequence_len`` token ids below the model's
vocabulary, ``BENCH_ROWS`` of them (default 256), seeded. With ``BENCH_KD_TOPK=k`` every row also
carries a random teacher top-k per token (the ``kd.chat_template`` fields).
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
    columns = {"input_ids": ids, "labels": ids}
    if top_k := int(os.environ.get("BENCH_KD_TOPK", "0")):
        import numpy as np

        rng = np.random.default_rng(cfg.seed)
        shape = (rows, cfg.sequence_len, top_k)
        logits = rng.standard_normal(shape, dtype=np.float32) * 2
        logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        columns["kd_token_ids"] = list(rng.integers(0, vocab - 1024, shape, dtype=np.int32))
        columns["kd_logprobs"] = list(-np.sort(-logprobs, axis=-1))
        columns["kd_mask"] = list(np.ones(shape[:2], dtype=np.int8))
    train = datasets.Dataset.from_dict(columns)
    return PreparedData(train, None, "random", Path("/tmp"), False, {"train_rows": rows})
