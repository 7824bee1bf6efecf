"""A tiny model trained with diffusion on CPU fills masked answers, and the inference commands work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftcore.config import load_config
from ftcore.errors import FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model
from ftcore_diffusion.decode import parse_prompt, unmask


def answer_accuracy(model, tokenizer, mask_id) -> float:
    right = 0
    for a in range(10):
        for b in range(10):
            answer = str(a + b)
            ids = [
                tokenizer.bos_token_id,
                *tokenizer(f"{a}+{b}={answer}", add_special_tokens=False).input_ids,
                tokenizer.eos_token_id,
            ]
            masked = torch.tensor([ids])
            masked[0, -1 - len(answer) : -1] = mask_id
            filled = unmask(model, masked, mask_id, steps=len(answer))
            right += tokenizer.decode(filled[0, -1 - len(answer) : -1]) == answer
    return right / 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    base = save_tiny_model(
        str(root / "tiny"),
        "llama",
        hidden_size=128,
        intermediate_size=256,
        head_dim=32,
        num_key_value_heads=4,
    )
    cfg = {
        "base_model": base,
        "model_init": "random",
        "plugins": ["diffusion"],
        "datasets": [{"path": data.write_jsonl(root / "add.jsonl", data.addition_rows(20))}],
        "sequence_len": 16,
        "micro_batch_size": 32,
        "num_epochs": 30,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.05,
        "logging_steps": 50,
        "bf16": False,
        "dataset_prepared_path": str(root / "prepared"),
        "output_dir": str(root / "out"),
        "diffusion": {"generation_interval": 100, "num_generation_samples": 2},
    }
    train(load_config(cfg))
    return cfg


def test_the_trained_model_fills_masked_answers_far_above_chance(trained):
    out = trained["output_dir"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    mask_id = tokenizer.convert_tokens_to_ids("<|diffusion_mask|>")
    assert mask_id == 103  # added to the 103-token vocabulary
    trained_model = AutoModelForCausalLM.from_pretrained(out).eval()
    untrained = AutoModelForCausalLM.from_config(trained_model.config).eval()
    assert answer_accuracy(untrained, tokenizer, mask_id) < 0.05
    assert answer_accuracy(trained_model, tokenizer, mask_id) >= 0.2  # chance: 1 in 10 per digit
    log = json.loads(next(Path(out).glob("checkpoint-*/trainer_state.json")).read_text())[
        "log_history"
    ]
    logged = [entry for entry in log if "loss" in entry]
    for key in (
        "accuracy",
        "mask_ratio",
        "num_masked_tokens",
        "avg_p_mask",
        "ce_loss",
        "importance_weight_avg",
    ):
        assert key in logged[-1], key
    assert logged[-1]["accuracy"] > logged[0]["accuracy"]


def test_samples_are_logged_every_interval(trained):
    out = Path(trained["output_dir"])
    steps = max(int(folder.name.split("-")[1]) for folder in out.glob("checkpoint-*"))
    rows = [json.loads(line) for line in (out / "samples" / "diffusion_samples.jsonl").open()]
    assert steps >= 100
    assert [row["step"] for row in rows] == [s for s in range(100, steps + 1, 100) for _ in (0, 1)]
    for row in rows:
        assert "[MASK]" in row["masked"] and "[MASK]" not in row["generated"]
        prompt = row["masked"].split("[MASK]")[0]  # the prompt is never masked
        assert row["original"].startswith(prompt) and row["generated"].startswith(prompt)


def test_complete_and_mask_commands_in_a_scripted_session(trained, tmp_path):
    config = tmp_path / "run.yml"
    config.write_text(json.dumps(trained))
    result = subprocess.run(
        [sys.executable, "-m", "ftcore", "inference", str(config)],
        input=":mask 2 x\n:complete 100000 x\n:complete 2 3+4=\n:mask 0.5 1+2=3\n",
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # a bad prompt is one error line, and the session goes on
    assert "error: :mask takes a ratio in [0, 1] first, got '2'" in result.stderr
    assert (
        "error: :complete 100000: the prompt's" in result.stderr
        and "Traceback" not in result.stderr
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "masked:    3+4=[MASK][MASK]"
    assert lines[1].startswith("generated: 3+4=") and "[MASK]" not in lines[1]
    assert lines[2].startswith("masked:    ") and lines[3].startswith("generated: ")


def test_prompt_commands_parse():
    assert parse_prompt(":complete 8 Once upon") == ("complete", "Once upon", 8.0)
    assert parse_prompt(":mask 0.4 The quick fox") == ("mask", "The quick fox", 0.4)
    assert parse_prompt("plain text") == ("complete", "plain text", 64.0)
    for bad in ("2", "-0.5", "half"):  # one message at the prompt, not a traceback
        with pytest.raises(
            FtcoreError, match=rf":mask takes a ratio in \[0, 1\] first, got '{bad}'"
        ):
            parse_prompt(f":mask {bad} x")


def test_a_mask_token_id_outside_the_vocabulary_or_special_is_refused():
    from types import SimpleNamespace

    from ftcore.testing import load_tiny_tokenizer
    from ftcore_diffusion.plugin import resolve_mask_token

    tokenizer = load_tiny_tokenizer()
    block = lambda token_id: SimpleNamespace(mask_token_id=token_id, mask_token_str=None)  # noqa: E731
    with pytest.raises(FtcoreError, match=r"mask_token_id: 999 is outside the vocabulary"):
        resolve_mask_token(block(999), tokenizer)
    with pytest.raises(FtcoreError, match="is the BOS, EOS or padding token"):
        resolve_mask_token(block(tokenizer.eos_token_id), tokenizer)
    assert resolve_mask_token(block(50), tokenizer) == 50


def test_a_mask_ratio_range_that_masks_nothing_is_a_config_error():
    from ftcore.errors import ConfigError

    block = {"min_mask_ratio": 0, "max_mask_ratio": 0, "eps": 0}
    with pytest.raises(ConfigError, match=r"diffusion.max_mask_ratio: must be greater than 0"):
        load_config({"plugins": ["diffusion"], "diffusion": block})


def test_a_sample_whose_prompt_fills_generation_max_length_is_skipped_with_a_warning(caplog):
    import logging
    from types import SimpleNamespace

    from ftcore.testing import build_tiny_model, load_tiny_tokenizer
    from ftcore_diffusion.config import DiffusionBlock
    from ftcore_diffusion.samples import SampleCallback

    tokenizer = load_tiny_tokenizer()
    model = build_tiny_model("llama")
    long_prompt = {"input_ids": list(range(4, 14)), "labels": [-100] * 8 + [12, 13]}
    short_prompt = {"input_ids": list(range(4, 10)), "labels": [-100, -100, 6, 7, 8, 9]}
    no_answer = {"input_ids": list(range(4, 8)), "labels": [-100] * 4}
    block = DiffusionBlock(generation_interval=1, num_generation_samples=3,
                           generation_max_length=6, generation_steps=2)  # fmt: skip
    plugin = SimpleNamespace(mask_token_id=3, trainer=None)
    callback = SampleCallback(block, plugin)
    state = SimpleNamespace(is_world_process_zero=True, global_step=1)
    loader = SimpleNamespace(dataset=[long_prompt, short_prompt, no_answer])
    with caplog.at_level(logging.INFO, logger="ftcore"):
        for _ in range(2):
            callback.on_step_end(None, state, None, model=model, processing_class=tokenizer,
                                 train_dataloader=loader)  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "ftcore: diffusion sample 1 is skipped: its first 6 tokens (generation_max_length) hold "
        "no answer token to mask, as its prompt is 8 tokens long; raise "
        "diffusion.generation_max_length above that",
        "ftcore: diffusion sample 3 is skipped: it has no answer token to mask",
    ]
    samples = [r.getMessage().split("\n")[0] for r in caplog.records if r.levelno == logging.INFO]
    assert samples == ["ftcore: diffusion sample 2 at step 1"] * 2
