"""Exact label masks for every built-in dataset type, through the real ``datasets`` pipeline."""

from __future__ import annotations

import json

import pytest

from ftcore.config import load_config
from ftcore.config.schema import BUILTIN_DATASET_TYPES
from ftcore.data.prepare import prepare_datasets
from ftcore.data.strategies import BUILTIN_STRATEGIES, IGNORE_INDEX


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def prepare(tmp_path, tokenizer, dataset, **keys):
    cfg = load_config(
        {
            "datasets": [dataset],
            "shuffle": False,
            "dataset_prepared_path": str(tmp_path / "cache"),
            "sequence_len": 512,
            **keys,
        }
    ).cfg
    return prepare_datasets(cfg, tokenizer)


def trained_text(tokenizer, row) -> str:
    """The text of the tokens that carry loss, with '|' where an untrained gap separates them."""
    pieces, previous = [], False
    for token, label in zip(row["input_ids"], row["labels"]):
        if label != IGNORE_INDEX:
            assert label == token
            pieces.append(tokenizer.decode([token]))
        elif previous:
            pieces.append("|")
        previous = label != IGNORE_INDEX
    return "".join(pieces).strip("|")


def test_builtin_types_match_the_schema():
    assert set(BUILTIN_STRATEGIES) == set(BUILTIN_DATASET_TYPES)


def test_completion_trains_every_token_but_the_first(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "1+2=3"}])
    row = prepare(tmp_path, tiny_tokenizer, {"path": path, "type": "completion"}).train[0]
    assert tiny_tokenizer.decode(row["input_ids"]) == "<s>1+2=3</s>"
    assert row["labels"] == [IGNORE_INDEX, *row["input_ids"][1:]]


def test_completion_reads_the_configured_field(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "abc"}])
    data = prepare(tmp_path, tiny_tokenizer, {"path": path, "type": "completion", "field": "body"})
    assert trained_text(tiny_tokenizer, data.train[0]) == "abc</s>"


ALPACA = {"instruction": "Add", "input": "2 and 3", "output": "5"}


def test_alpaca_trains_the_output_and_eos_only(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA])
    row = prepare(tmp_path, tiny_tokenizer, {"path": path, "type": "alpaca"}).train[0]
    text = tiny_tokenizer.decode(row["input_ids"])
    assert text.startswith("<s>Below is an instruction")
    assert "### Input:\n2 and 3\n\n### Response:\n5</s>" in text
    assert trained_text(tiny_tokenizer, row) == "5</s>"


def test_alpaca_with_train_on_inputs_trains_the_prompt_too(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA])
    data = prepare(tmp_path, tiny_tokenizer, {"path": path, "type": "alpaca"}, train_on_inputs=True)
    row = data.train[0]
    assert row["labels"] == [IGNORE_INDEX, *row["input_ids"][1:]]


CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "6"},
    ]
}


def test_chat_template_trains_assistant_turns_without_headers(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "chat.jsonl", [CHAT])
    row = prepare(tmp_path, tiny_tokenizer, {"path": path, "type": "chat_template"}).train[0]
    assert tiny_tokenizer.decode(row["input_ids"]).startswith("<|im_start|>system\nBe brief.")
    assert trained_text(tiny_tokenizer, row) == "4<|im_end|>\n|6<|im_end|>\n"


def test_chat_template_roles_to_train_and_sharegpt_mappings(tmp_path, tiny_tokenizer):
    sharegpt = {
        "conversations": [
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "yo"},
        ]
    }
    path = write_jsonl(tmp_path / "sg.jsonl", [sharegpt])
    dataset = {
        "path": path,
        "type": "chat_template",
        "field_messages": "conversations",
        "message_property_mappings": {"role": "from", "content": "value"},
        "roles_to_train": ["user", "assistant"],
    }
    row = prepare(tmp_path, tiny_tokenizer, dataset).train[0]
    # user turns carry their header (only assistant headers are prompts), assistant turns do not
    assert trained_text(tiny_tokenizer, row) == "user\nhi<|im_end|>\n|yo<|im_end|>\n"


def test_input_output_trains_labelled_segments(tmp_path, tiny_tokenizer):
    row = {
        "segments": [
            {"text": "Q: 1+1\n", "label": False},
            {"text": "A: 2\n", "label": True},
            {"text": "Q: 2+2\n", "label": False},
            {"text": "A: 4", "label": True},
        ]
    }
    path = write_jsonl(tmp_path / "io.jsonl", [row])
    out = prepare(tmp_path, tiny_tokenizer, {"path": path, "type": "input_output"}).train[0]
    assert tiny_tokenizer.decode(out["input_ids"]) == "Q: 1+1\nA: 2\nQ: 2+2\nA: 4"
    assert trained_text(tiny_tokenizer, out) == "A: 2\n|A: 4"


@pytest.mark.parametrize("fmt", ["parquet", "csv", "saved"])
def test_other_sources_read_the_same_rows(tmp_path, tiny_tokenizer, fmt):
    import datasets

    table = datasets.Dataset.from_dict({"text": ["ab", "cd"]})
    if fmt == "parquet":
        path = tmp_path / "d.parquet"
        table.to_parquet(str(path))
    elif fmt == "csv":
        path = tmp_path / "d.csv"
        table.to_csv(str(path), index=False)
    else:
        path = tmp_path / "saved"
        table.save_to_disk(str(path))
    data = prepare(tmp_path, tiny_tokenizer, {"path": str(path), "type": "completion"})
    assert [tiny_tokenizer.decode(r) for r in data.train["input_ids"]] == [
        "<s>ab</s>",
        "<s>cd</s>",
    ]
