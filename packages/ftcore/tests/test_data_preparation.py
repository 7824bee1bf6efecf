"""Bad rows, bad files, lengths, splitting, mixing and the tokenization cache."""

from __future__ import annotations

import json
import logging

import pytest

from ftcore.config import load_config
from ftcore.data import prepare as prepare_module
from ftcore.data.prepare import REPORT_NAME, prepare_datasets
from ftcore.errors import FtcoreError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def config(tmp_path, datasets, **keys):
    return load_config(
        {
            "datasets": datasets,
            "dataset_prepared_path": str(tmp_path / "cache"),
            "sequence_len": 16,
            **keys,
        }
    ).cfg


GOOD = {"instruction": "hi", "output": "yo"}


def test_rows_that_do_not_fit_are_counted_skipped_and_reported(tmp_path, tiny_tokenizer, caplog):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [{"text": "a"}, {"text": "b"}, {"text": 3}, {"text": "c"}, {"other": "d"}],
    )
    cfg = config(tmp_path, [{"path": path, "type": "completion"}])
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        data = prepare_datasets(cfg, tiny_tokenizer)
    assert len(data.train) == 3
    report = data.cache_dir / REPORT_NAME
    assert caplog.messages == [
        f"ftcore: skipped 2 of 5 rows of {path} (1 field 'text' is int, not text, "
        f"1 missing field 'text'); the rows are listed in {report}"
    ]
    listed = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["row"], r["reason"]) for r in listed] == [
        (2, "field 'text' is int, not text"),
        (4, "missing field 'text'"),
    ]
    assert data.summary["datasets"]["datasets[0]"] == {
        "path": path,
        "rows": 5,
        "kept": 3,
        "skipped": {"field 'text' is int, not text": 1, "missing field 'text'": 1},
    }


def test_strict_makes_bad_rows_an_error(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}, {"other": "b"}])
    cfg = config(tmp_path, [{"path": path, "type": "completion"}], strict=True)
    with pytest.raises(FtcoreError) as info:
        prepare_datasets(cfg, tiny_tokenizer)
    assert str(info.value) == (
        f"dataset {path}: 1 of 2 rows do not fit type 'completion' (row 1: missing field "
        "'text'); fix them, or set strict: false to skip them"
    )


def test_wrong_field_name_for_every_row_is_an_error(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "response": "y"}] * 3)
    cfg = config(tmp_path, [{"path": path, "type": "alpaca"}])
    with pytest.raises(FtcoreError) as info:
        prepare_datasets(cfg, tiny_tokenizer)
    assert str(info.value) == (
        f"dataset {path}: none of its 3 rows fits type 'alpaca' (3 missing field 'output'); "
        "check type, field names and sequence_len"
    )


def test_missing_file_is_named(tmp_path, tiny_tokenizer):
    cfg = config(tmp_path, [{"path": str(tmp_path / "nope.jsonl")}])
    with pytest.raises(FtcoreError, match=r"^dataset file not found: .*nope\.jsonl$"):
        prepare_datasets(cfg, tiny_tokenizer)


@pytest.mark.parametrize(("name", "lines"), [("bad.jsonl", ['{"text": "a"}', '{"text": "caf\xe9"}']),
                                           ("bad.csv", ["text", "a", "caf\xe9"])])  # fmt: skip
def test_a_line_that_is_not_utf8_is_pointed_at(tmp_path, tiny_tokenizer, name, lines):
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    cfg = config(tmp_path, [{"path": str(path)}])
    with pytest.raises(FtcoreError) as info:
        prepare_datasets(cfg, tiny_tokenizer)
    number, column = len(lines), lines[-1].index("\xe9") + 1
    assert str(info.value) == (
        f"dataset {path}: line {number} is not UTF-8 text (byte 0xe9 at column {column}); "
        "save the file as UTF-8"
    )


def test_a_json_line_that_is_not_an_object_is_pointed_at(tmp_path, tiny_tokenizer):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n[1, 2]\n')
    cfg = config(tmp_path, [{"path": str(path)}])
    with pytest.raises(FtcoreError, match=r"line 3 is a JSON list, not an object of fields; fix"):
        prepare_datasets(cfg, tiny_tokenizer)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_file_is_named(tmp_path, tiny_tokenizer, text):
    (tmp_path / "empty.jsonl").write_text(text)  # blank lines only: datasets' "no data" before
    cfg = config(tmp_path, [{"path": str(tmp_path / "empty.jsonl")}])
    with pytest.raises(FtcoreError, match=r"^dataset .*empty\.jsonl: empty file .*empty\.jsonl$"):
        prepare_datasets(cfg, tiny_tokenizer)


def test_corrupt_json_line_is_pointed_at(tmp_path, tiny_tokenizer):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n{"text": "c"}\n')
    cfg = config(tmp_path, [{"path": str(path)}])
    with pytest.raises(FtcoreError) as info:
        prepare_datasets(cfg, tiny_tokenizer)
    assert str(info.value).startswith(f"dataset {path}: line 2 is not valid JSON")


LONG = {"text": "x" * 30}  # 32 tokens with <s> and </s>


def test_too_long_rows_are_dropped_by_default(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "short"}, LONG])
    data = prepare_datasets(config(tmp_path, [{"path": path}]), tiny_tokenizer)
    assert len(data.train) == 1
    assert data.summary["datasets"]["datasets[0]"]["skipped"] == {
        "longer than sequence_len (32 > 16 tokens)": 1
    }


def test_too_long_rows_are_truncated_when_asked(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [LONG])
    cfg = config(tmp_path, [{"path": path}], excess_length_strategy="truncate")
    row = prepare_datasets(cfg, tiny_tokenizer).train[0]
    assert len(row["input_ids"]) == 16
    assert tiny_tokenizer.decode(row["input_ids"]) == "<s>" + "x" * 15


def test_too_long_rows_are_an_error_when_asked(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "ok"}, LONG])
    cfg = config(tmp_path, [{"path": path}], excess_length_strategy="error")
    with pytest.raises(FtcoreError) as info:
        prepare_datasets(cfg, tiny_tokenizer)
    assert str(info.value) == (
        f"dataset {path}: 1 row is longer than sequence_len 16 (first: row 1, 32 > 16 tokens); "
        "raise sequence_len, or set excess_length_strategy: truncate or drop"
    )


def test_datasets_are_mixed_split_and_shuffled_reproducibly(tmp_path, tiny_tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(30)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"b{i}"} for i in range(10)])
    cfg = config(tmp_path, [{"path": a}, {"path": b}], val_set_size=0.25, seed=7)
    data = prepare_datasets(cfg, tiny_tokenizer)
    assert (len(data.train), len(data.eval)) == (30, 10)
    train = [tiny_tokenizer.decode(r) for r in data.train["input_ids"]]
    assert any(t.startswith("<s>b") for t in train)
    again = prepare_datasets(
        config(tmp_path / "other", [{"path": a}, {"path": b}], val_set_size=0.25, seed=7),
        tiny_tokenizer,
    )
    assert [tiny_tokenizer.decode(r) for r in again.train["input_ids"]] == train


def test_second_preparation_reuses_the_cache_without_tokenizing(
    tmp_path, tiny_tokenizer, monkeypatch
):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "abc"}, {"text": "de"}])
    cfg = config(tmp_path, [{"path": path}])
    first = prepare_datasets(cfg, tiny_tokenizer)
    assert not first.from_cache

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(prepare_module, "_tokenize_one", no_tokenizing)
    second = prepare_datasets(cfg, tiny_tokenizer)
    assert second.from_cache and second.fingerprint == first.fingerprint
    assert second.train["input_ids"] == first.train["input_ids"]

    # Anything tokenization depends on changes the fingerprint: the config, and the data itself.
    changed = config(tmp_path, [{"path": path}], sequence_len=32)
    with pytest.raises(AssertionError, match="tokenized again"):
        prepare_datasets(changed, tiny_tokenizer)
    write_jsonl(tmp_path / "a.jsonl", [{"text": "abc"}, {"text": "dE"}])
    with pytest.raises(AssertionError, match="tokenized again"):
        prepare_datasets(cfg, tiny_tokenizer)


def test_interrupted_preparation_leaves_no_cache(tmp_path, tiny_tokenizer, monkeypatch):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "abc"}])
    cfg = config(tmp_path, [{"path": path}])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_datasets(cfg, tiny_tokenizer)
    assert list((tmp_path / "cache").iterdir()) == []


def test_val_set_size_larger_than_the_data_is_explained(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "ab"}] * 4)
    with pytest.raises(FtcoreError) as info:
        prepare_datasets(config(tmp_path, [{"path": path}], val_set_size=10), tiny_tokenizer)
    assert str(info.value) == (
        "val_set_size 10.0 holds out 10 of 4 rows; it must leave at least one row for "
        "evaluation and one for training"
    )


def test_a_folder_of_files_and_its_data_files(tmp_path, tiny_tokenizer):
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "one.jsonl", [{"text": "ab"}])
    write_jsonl(folder / "two.jsonl", [{"text": "cd"}, {"text": "ef"}])
    assert (
        len(prepare_datasets(config(tmp_path, [{"path": str(folder)}]), tiny_tokenizer).train) == 3
    )
    picked = config(tmp_path / "b", [{"path": str(folder), "data_files": "two.jsonl"}])
    assert len(prepare_datasets(picked, tiny_tokenizer).train) == 2
    missing = config(tmp_path / "c", [{"path": str(folder), "data_files": "three.jsonl"}])
    with pytest.raises(FtcoreError, match=r"data files not found: .*three\.jsonl"):
        prepare_datasets(missing, tiny_tokenizer)


def test_a_named_chat_template_per_dataset(tmp_path, tiny_tokenizer):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    ]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    cfg = config(
        tmp_path,
        [{"path": path, "type": "chat_template", "chat_template": "chatml"}],
        sequence_len=128,
    )
    row = prepare_datasets(cfg, tiny_tokenizer).train[0]
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tiny_tokenizer.decode(trained) == "yo<|im_end|>\n"


def test_two_processes_preparing_the_same_data_both_succeed(tmp_path, tiny_tokenizer):
    import subprocess
    import sys

    path = write_jsonl(tmp_path / "a.jsonl", [{"text": f"row {i}"} for i in range(2000)])
    script = (
        "import sys\n"
        "from ftcore.config import load_config\n"
        "from ftcore.data.prepare import prepare_datasets\n"
        "from ftcore.testing import load_tiny_tokenizer\n"
        f"cfg = load_config({{'datasets': [{{'path': {path!r}}}], 'dataset_prepared_path': {str(tmp_path / 'cache')!r}}}).cfg\n"
        "print(len(prepare_datasets(cfg, load_tiny_tokenizer()).train))\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err[-500:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["2000"] * 3
    assert len([p for p in (tmp_path / "cache").iterdir()]) == 1  # one cache, no staging left


def test_the_data_file_suffixes_of_the_loader_and_of_the_path_check_agree():
    from ftcore.data.sources import _FORMATS
    from ftcore.locations import DATA_SUFFIXES

    assert set(_FORMATS) == set(DATA_SUFFIXES)
