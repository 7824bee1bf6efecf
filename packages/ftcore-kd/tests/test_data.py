"""``kd.chat_template`` rows: both layouts, alignment, temperature, mismatches, packing, batches."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ftcore.data.packing import PackedCollator, PaddingCollator, pack_dataset
from ftcore.data.strategies import RowError
from ftcore.testing import load_tiny_tokenizer
from ftcore_kd.collator import KDCollator
from ftcore_kd.data import KDChatTemplate, rescale, teacher_rows

MESSAGES = [{"role": "user", "content": "3+4="}, {"role": "assistant", "content": "7"}]


def ds(**keys):
    base = dict(field_messages="messages", message_property_mappings={"role": "role", "content": "content"},
                roles_to_train=["assistant"], chat_template=None, logprobs_field="logprobs",
                temperature=1.0)  # fmt: skip
    return SimpleNamespace(**(base | keys))


def cfg(**keys):
    return SimpleNamespace(
        **({"chat_template": None, "kd_top_k": None, "kd_temperature": 1.0} | keys)
    )


def tokens():
    tokenizer = load_tiny_tokenizer()
    return tokenizer, tokenizer.apply_chat_template(MESSAGES, tokenize=True, return_dict=True)[
        "input_ids"
    ]


def test_ftcore_and_vllm_layouts_give_the_same_rows():
    tokenizer, ids = tokens()
    ours = [None] + [{"token_ids": [t, 5], "logprobs": [-0.1, -2.5]} for t in ids[1:]]
    vllm = [None] + [[{"token": f"token_id:{t}", "logprob": -0.1}, {"token": "token_id:5", "logprob": -2.5}]
                     for t in ids[1:]]  # fmt: skip
    strategy = KDChatTemplate()
    a = strategy.tokenize({"messages": MESSAGES, "logprobs": ours}, tokenizer, ds(), cfg())
    b = strategy.tokenize({"messages": MESSAGES, "logprobs": vllm}, tokenizer, ds(), cfg())
    assert a == b
    # row i describes token i: its first id is token i itself here
    assert [row[0] for row in a["kd_token_ids"][1:]] == a["input_ids"][1:]
    assert a["kd_mask"] == [int(label != -100) for label in a["labels"]]
    assert a["kd_logprobs"][0] == [-math.inf, -math.inf]


def test_top_k_keeps_the_most_probable_and_temperature_rescales():
    rows = teacher_rows([None, {"token_ids": [9, 8, 7], "logprobs": [-3.0, -0.2, -1.0]}], 2, 2,
                        ds(temperature=2.0), cfg(kd_temperature=1.0), vocab=16)  # fmt: skip
    ids, logprobs, present = rows
    assert ids[1] == [8, 7] and present == [0, 1]
    expected = rescale([-0.2, -1.0], 2.0, 1.0)
    assert logprobs[1] == pytest.approx(expected)
    assert sum(math.exp(x) for x in expected) == pytest.approx(1.0)
    assert expected[0] - expected[1] == pytest.approx(2 * 0.8)  # sharper at the lower temperature


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"token_ids": [1, 2], "logprobs": [-0.5, None]}, "None is not a log-probability"),
        ({"token_ids": [1, 2], "logprobs": [5.0, -1.0]}, "5.0 is not a log-probability"),
        ({"token_ids": [1, 2], "logprobs": [-0.5, float("nan")]}, "nan is not a log-probability"),
        ({"token_ids": [-1, 2], "logprobs": [-0.5, -1.0]}, "token id -1 is outside"),
        ({"token_ids": [1, 5000], "logprobs": [-0.5, -1.0]}, "token id 5000 is outside"),
        ([{"token": "token_id:9999", "logprob": -0.1}], "token id 9999 is outside"),
    ],
)
def test_an_entry_no_teacher_could_give_skips_its_row(entry, problem):
    tokenizer, ids = tokens()
    entries = [None] * len(ids)
    entries[-1] = entry
    with pytest.raises(RowError, match=problem):
        KDChatTemplate().tokenize(
            {"messages": MESSAGES, "logprobs": entries}, tokenizer, ds(), cfg()
        )


def test_a_logprobs_field_that_is_not_a_list_says_what_it_is():
    tokenizer, _ = tokens()
    with pytest.raises(RowError, match="field 'logprobs' is str, not a list"):
        KDChatTemplate().tokenize(
            {"messages": MESSAGES, "logprobs": "oops"}, tokenizer, ds(), cfg()
        )
    with pytest.raises(RowError, match="missing field 'logprobs'"):
        KDChatTemplate().tokenize({"messages": MESSAGES}, tokenizer, ds(), cfg())


def test_a_row_made_with_another_tokenizer_is_refused_with_the_reason():
    tokenizer, ids = tokens()
    with pytest.raises(RowError, match=rf"has 3 entries for {len(ids)} tokens"):
        KDChatTemplate().tokenize(
            {"messages": MESSAGES, "logprobs": [None, None, None]}, tokenizer, ds(), cfg()
        )


def test_packed_rows_and_batches_keep_the_teacher_fields_aligned():
    import datasets

    tokenizer, ids = tokens()
    entries = [None] + [{"token_ids": [t], "logprobs": [-0.5]} for t in ids[1:]]
    row = KDChatTemplate().tokenize(
        {"messages": MESSAGES, "logprobs": entries}, tokenizer, ds(), cfg()
    )
    dataset = datasets.Dataset.from_list([row, row])
    packed, _ = pack_dataset(dataset, capacity=2 * len(ids))
    assert packed[0]["kd_token_ids"] == row["kd_token_ids"] * 2
    batch = KDCollator(PackedCollator(0))(list(packed))
    assert batch["kd_token_ids"].shape == (1, 2 * len(ids), 1)
    padded = KDCollator(PaddingCollator(0))([row, {**row, **{k: v[:-2] for k, v in row.items()}}])
    assert padded["kd_mask"][1, -2:].tolist() == [False, False]
    assert torch.isinf(padded["kd_logprobs"][1, -1]).all()
