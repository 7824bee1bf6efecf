"""Distillation end to end on CPU: data from ``ftcore kd generate``, offline and online training,
a real teacher server, LoRA, packing, accumulation and evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from teacher_server import TeacherServer
from transformers import AutoModelForCausalLM

from ftcore.config import load_config
from ftcore.errors import FtcoreError
from ftcore.pipeline import train
from ftcore.testing import load_tiny_tokenizer, save_tiny_model
from ftcore_kd.teacher import LocalTeacher, ServerTeacher

TOP_K = 8


def chats(count: int = 48) -> list[dict]:
    rows = []
    for index in range(count):
        a, b = index % 7, index // 7
        rows.append({"messages": [{"role": "user", "content": f"{a}+{b}="},
                                  {"role": "assistant", "content": f"{a + b:02d} since {a}+{b}"}]})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    teacher = save_tiny_model(str(root / "teacher"), "llama", seed=1)
    with torch.no_grad():  # a confident teacher, so that its distributions are worth learning
        model = AutoModelForCausalLM.from_pretrained(teacher)
        model.lm_head.weight.mul_(8)
        model.save_pretrained(teacher)
    return {"teacher": teacher, "student": save_tiny_model(str(root / "student"), "llama", seed=0)}


@pytest.fixture(scope="module")
def kd_data(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("data")
    source = root / "chats.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in chats()))
    config = root / "make.yml"
    config.write_text(json.dumps({
        "base_model": models["student"], "plugins": ["kd"], "output_dir": str(root / "unused"),
        "datasets": [{"path": str(source), "type": "chat_template"}],
        "kd_teacher_model": models["teacher"], "kd_top_k": TOP_K,
    }))  # fmt: skip
    output = root / "chats.kd.jsonl"
    command = [
        sys.executable,
        "-m",
        "ftcore",
        "kd",
        "generate",
        str(config),
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"wrote 48 rows to {output}"
    return {"source": source, "kd": output, "config": config, "command": command}


def base_config(tmp_path: Path, student: str, **keys) -> dict:
    """A run of ``student``; a key given as ``None`` is left out (its default applies)."""
    cfg = {
        "base_model": student, "sequence_len": 64, "micro_batch_size": 8, "num_epochs": 6,
        "learning_rate": 3e-3, "bf16": False, "logging_steps": 1,
        "dataset_prepared_path": str(tmp_path / "prepared"), "output_dir": str(tmp_path / "out"),
        **keys,
    }  # fmt: skip
    return {key: value for key, value in cfg.items() if value is not None}


def kl_to_teacher(student_dir: str, teacher_dir: str) -> float:
    """Mean KL(teacher || student) over the trained positions of the conversations."""
    tokenizer = load_tiny_tokenizer()
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    student = AutoModelForCausalLM.from_pretrained(student_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in chats():
            ids = tokenizer.apply_chat_template(
                row["messages"], return_tensors="pt", return_dict=True
            )["input_ids"]
            t = torch.log_softmax(teacher(input_ids=ids).logits[0], -1)
            s = torch.log_softmax(student(input_ids=ids).logits[0], -1)
            total += (t.exp() * (t - s)).sum(-1)[-8:].sum().item()  # the answer's positions
            count += 8
    return total / count


def test_generated_data_has_the_teachers_topk_for_trained_tokens(kd_data, models):
    rows = [json.loads(line) for line in kd_data["kd"].read_text().splitlines()]
    assert len(rows) == 48 and rows[0]["messages"] == chats()[0]["messages"]
    entries = rows[0]["logprobs"]
    trained = [e for e in entries if e is not None]
    assert entries[0] is None and 4 <= len(trained) < len(entries)
    assert all(len(e["token_ids"]) == TOP_K for e in trained)
    assert all(e["logprobs"] == sorted(e["logprobs"], reverse=True) for e in trained)


def test_generation_resumes_after_an_interruption(kd_data, tmp_path):
    full = kd_data["kd"].read_text()
    lines = full.splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:20]) + lines[20][: len(lines[20]) // 2])  # killed mid-line
    command = [*kd_data["command"][:-1], str(partial)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert partial.read_text() == full


def test_generation_refuses_to_continue_a_file_with_other_settings(kd_data, tmp_path):
    partial = tmp_path / "partial.jsonl"
    command = [*kd_data["command"][:-1], str(partial)]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    assert json.loads((tmp_path / "partial.jsonl.settings.json").read_text())["kd_top_k"] == TOP_K
    partial.write_text("".join(partial.read_text().splitlines(keepends=True)[:20]))
    result = subprocess.run([*command, "kd_top_k=4"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"holds 20 rows made with other settings (kd_top_k: {TOP_K}, now 4)" in result.stderr
    assert len(partial.read_text().splitlines()) == 20  # untouched


def test_a_distilled_student_is_closer_to_the_teacher_than_one_trained_on_labels(
    tmp_path, models, kd_data
):
    distilled = base_config(
        tmp_path / "kd", models["student"], plugins=["kd"], kd_alpha=0.9, kd_ce_alpha=0.1,
        datasets=[{"path": str(kd_data["kd"]), "type": "kd.chat_template"}],
    )  # fmt: skip
    labels_only = base_config(
        tmp_path / "ce",
        models["student"],
        datasets=[{"path": str(kd_data["source"]), "type": "chat_template"}],
    )
    for cfg in (distilled, labels_only):
        train(load_config(cfg))
    log = json.loads(
        next(Path(distilled["output_dir"]).glob("checkpoint-*/trainer_state.json")).read_text()
    )
    logged = [entry for entry in log["log_history"] if "loss" in entry]
    assert logged[-1]["kd_loss"] < logged[0]["kd_loss"] and "ce_loss" in logged[-1]
    before = kl_to_teacher(models["student"], models["teacher"])
    kd = kl_to_teacher(distilled["output_dir"], models["teacher"])
    ce = kl_to_teacher(labels_only["output_dir"], models["teacher"])
    assert kd < 0.8 * before and kd < 0.5 * ce, (before, kd, ce)


def test_lora_packing_evaluation_and_accumulation(tmp_path, models, kd_data):
    common = dict(plugins=["kd"], datasets=[{"path": str(kd_data["kd"]), "type": "kd.chat_template"}],
                  num_epochs=None, max_steps=3, learning_rate=1e-2)  # fmt: skip
    results = {}
    for name, keys in {"big": {"micro_batch_size": 8},
                       "accumulated": {"micro_batch_size": 4, "gradient_accumulation_steps": 2}}.items():  # fmt: skip
        cfg = base_config(tmp_path / name, models["student"], **common, **keys)
        train(load_config(cfg))
        results[name] = load_file(str(Path(cfg["output_dir"]) / "model.safetensors"))
    for key, value in results["big"].items():
        torch.testing.assert_close(
            results["accumulated"][key], value, rtol=1e-4, atol=1e-5, msg=key
        )

    cfg = base_config(
        tmp_path / "lora", models["student"], **common, adapter="lora", lora_target_modules=["q_proj", "v_proj"],
        lora_modules_to_save=["lm_head"], sample_packing=True, val_set_size=8, eval_steps=3,
    )  # fmt: skip
    metrics = train(load_config(cfg))
    log = json.loads(
        next(Path(cfg["output_dir"]).glob("checkpoint-*/trainer_state.json")).read_text()
    )
    train_losses = [e["loss"] for e in log["log_history"] if "loss" in e]
    assert 0 < metrics["eval_loss"] < 3 * train_losses[0]  # the same loss, not a different scale
    assert (Path(cfg["output_dir"]) / "adapter_model.safetensors").is_file()


def packed_batch():
    tokenizer = load_tiny_tokenizer()
    rows = [
        tokenizer.apply_chat_template(r["messages"], return_dict=True)["input_ids"]
        for r in chats(3)
    ]
    ids = torch.tensor([rows[0] + rows[1], rows[2] + [0] * len(rows[1])])
    positions = torch.tensor([list(range(len(rows[0]))) + list(range(len(rows[1]))),
                              list(range(len(rows[2]))) + list(range(len(rows[1])))])  # fmt: skip
    return {"input_ids": ids, "position_ids": positions}


def test_the_server_teacher_matches_the_local_one(models):
    local = LocalTeacher(models["teacher"], TOP_K, 1.0, "cpu", torch.float32)
    with TeacherServer(local.model) as server:
        remote = ServerTeacher(server.url, None, TOP_K, 1.0, timeout=30, retries=0)
        assert remote.model == "tiny-teacher"
        batch = packed_batch()
        for a, b in zip(local.topk(batch), remote.topk(batch)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert (
            server.requests[-1]["prompt_logprobs"] == TOP_K
            and server.requests[-1]["max_tokens"] == 1
        )
        assert (
            len(server.requests[-1]["prompt"]) == 4
        )  # two packed sequences in row 0, and the padding


def test_online_training_against_the_server(tmp_path, models, kd_data):
    teacher = AutoModelForCausalLM.from_pretrained(models["teacher"])
    with TeacherServer(teacher) as server:
        cfg = base_config(
            tmp_path, models["student"], plugins=["kd"], kd_online_server_base_url=server.url,
            kd_top_k=TOP_K, num_epochs=None, max_steps=2,
            datasets=[{"path": str(kd_data["source"]), "type": "chat_template"}],
        )  # fmt: skip
        metrics = train(load_config(cfg))
    assert metrics["train_loss"] > 0 and len(server.requests) >= 2


def test_a_dead_server_is_one_clear_error(tmp_path, models, kd_data):
    cfg = base_config(
        tmp_path, models["student"], plugins=["kd"], kd_online_server_base_url="http://127.0.0.1:9/v1",
        kd_online_model="x", kd_top_k=TOP_K, kd_online_retries=1, kd_online_timeout=2, max_steps=1,
        datasets=[{"path": str(kd_data["source"]), "type": "chat_template"}],
    )  # fmt: skip
    with pytest.raises(
        FtcoreError,
        match=r"KD teacher server http://127.0.0.1:9/v1/completions failed after 2 tries",
    ):
        train(load_config(cfg))
    assert not (Path(cfg["output_dir"]) / "model.safetensors").exists()


def test_a_refused_request_is_not_retried_and_says_why(models):
    local = LocalTeacher(models["teacher"], TOP_K, 1.0, "cpu", torch.float32)
    with TeacherServer(local.model) as server:
        remote = ServerTeacher(server.url, "nope", TOP_K, 1.0, timeout=30, retries=3)
        with pytest.raises(FtcoreError, match=r"refused the request: HTTP 404: .*no model nope"):
            remote.topk(packed_batch())
        assert len(server.requests) == 1


def test_a_teacher_padded_to_more_rows_answers_within_the_students(tmp_path):
    # same tokenizer, 256 output rows against the student's 128: the rows beyond are no tokens
    wide = save_tiny_model(str(tmp_path / "wide"), "llama", seed=2, vocab_size=256)
    teacher = LocalTeacher(wide, TOP_K, 1.0, "cpu", torch.float32, vocab=128)
    ids, _, present = teacher.topk(packed_batch())
    assert present.any() and int(ids[present].max()) < 128


def test_a_teacher_with_another_tokenizer_is_refused(tmp_path, models):
    other = save_tiny_model(str(tmp_path / "other"), "llama", seed=2)
    tokenizer = load_tiny_tokenizer()
    tokenizer.add_tokens(["<extra-teacher-token>"])
    tokenizer.save_pretrained(other)
    student = load_tiny_tokenizer()
    with pytest.raises(FtcoreError, match=r"the teacher's tokenizer is not the student's \(1 of"):
        LocalTeacher(other, TOP_K, 1.0, "cpu", torch.float32, student_tokenizer=student)
    # tokens ftcore added to the student (a pad, extra tokens) do not make another tokenizer
    student.add_tokens(["<extra-teacher-token>", "<student-only>"])
    LocalTeacher(other, TOP_K, 1.0, "cpu", torch.float32, student_tokenizer=student)
    with pytest.raises(FtcoreError, match="kd_teacher_model: no model folder at"):
        LocalTeacher(str(tmp_path / "missing"), TOP_K, 1.0, "cpu", torch.float32)
    # relative, and no hub id (two slashes): a folder, not a name to look up on the hub
    with pytest.raises(FtcoreError, match="kd_teacher_model: no model folder at models/teacher/v2"):
        LocalTeacher("models/teacher/v2", TOP_K, 1.0, "cpu", torch.float32)


def test_a_server_answer_that_does_not_fit_the_prompt_is_refused(models, monkeypatch):
    local = LocalTeacher(models["teacher"], TOP_K, 1.0, "cpu", torch.float32)
    with TeacherServer(local.model) as server:
        remote = ServerTeacher(server.url, None, TOP_K, 1.0, timeout=30, retries=0, vocab=16)
        with pytest.raises(FtcoreError, match=r"returned token id \d+, outside the student's 16"):
            remote.topk(packed_batch())
        answer = server.prompt_logprobs
        monkeypatch.setattr(server, "prompt_logprobs", lambda ids, k: answer(ids, k)[:-2])
        remote = ServerTeacher(server.url, None, TOP_K, 1.0, timeout=30, retries=0)
        with pytest.raises(FtcoreError, match=r"returned \d+ prompt_logprobs entries for a prompt"):
            remote.topk(packed_batch())


def test_a_server_address_that_is_not_http_is_a_config_error(tmp_path, models):
    from ftcore.errors import ConfigError

    cfg = base_config(tmp_path, models["student"], plugins=["kd"], kd_top_k=TOP_K,
                      kd_online_server_base_url="not a url")  # fmt: skip
    with pytest.raises(ConfigError, match="kd_online_server_base_url: expected an http"):
        load_config(cfg)


def test_generate_refuses_to_write_over_its_input(kd_data):
    command = [*kd_data["command"][:-1], str(kd_data["source"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "is one of the input datasets" in result.stderr
    assert "logprobs" not in kd_data["source"].read_text()  # untouched


def test_reverse_kl_over_partial_masses_warns(tmp_path, models, kd_data, caplog):
    import logging

    cfg = base_config(tmp_path, models["student"], plugins=["kd"], kd_beta=1.0,
                      datasets=[{"path": str(kd_data["kd"]), "type": "kd.chat_template"}])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        load_config(cfg)
        assert any(
            "kd_beta: 1 (reverse KL) without kd_normalize_topk" in m for m in caplog.messages
        )
        caplog.clear()
        load_config({**cfg, "kd_normalize_topk": True})
        load_config({**cfg, "kd_beta": 0.5})
    assert not any("reverse KL" in m for m in caplog.messages)


def test_both_loss_weights_zero_is_a_config_error(tmp_path, models, kd_data):
    from ftcore.errors import ConfigError

    cfg = base_config(tmp_path, models["student"], plugins=["kd"], kd_alpha=0, kd_ce_alpha=0,
                      datasets=[{"path": str(kd_data["kd"]), "type": "kd.chat_template"}])  # fmt: skip
    with pytest.raises(ConfigError, match="kd_alpha and kd_ce_alpha are both 0"):
        load_config(cfg)


def test_a_kd_top_k_above_what_the_data_holds_is_warned_about_once(
    tmp_path, models, kd_data, caplog
):
    import logging

    cfg = base_config(tmp_path, models["student"], plugins=["kd"], kd_top_k=2 * TOP_K,
                      max_steps=1, num_epochs=None,
                      datasets=[{"path": str(kd_data["kd"]), "type": "kd.chat_template"}])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        train(load_config(cfg))
    assert [m for m in caplog.messages if "kd_top_k" in m] == [
        f"ftcore: kd_top_k is {2 * TOP_K}, but the dataset's logprobs hold at most {TOP_K} tokens "
        f"per position: KD trains on those {TOP_K}. Set kd_top_k: {TOP_K} to say so, or make the "
        f"data again with kd_top_k {2 * TOP_K} (ftcore kd generate)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        train(load_config({**cfg, "kd_top_k": TOP_K, "output_dir": str(tmp_path / "again")}))
    assert not [m for m in caplog.messages if "kd_top_k" in m]
