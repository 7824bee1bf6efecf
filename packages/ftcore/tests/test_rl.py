"""Preference and RL training through TRL on tiny models: DPO, KTO, ORPO, GRPO."""

from __future__ import annotations

import inspect
import json
import logging
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from ftcore.config import load_config
from ftcore.data import preference
from ftcore.data.rl_lengths import answered_count, check_length, orpo_counts, token_count
from ftcore.data.strategies import RowError
from ftcore.errors import FtcoreError
from ftcore.pipeline import train
from ftcore.testing import data, save_tiny_model

DATA = {
    "dpo": (data.preference_rows, "preference"),
    "orpo": (data.preference_rows, "preference"),
    "kto": (data.kto_rows, "kto"),
    "grpo": (data.prompt_rows, "prompt"),
}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def rl_config(tmp_path: Path, base_model: str, method: str, **keys) -> dict:
    rows, kind = DATA[method]
    trl = (
        {
            "reward_funcs": ["ftcore.testing.data:exact_answer_reward"],
            "num_generations": 4,
            "max_completion_length": 4,
        }
        if method == "grpo"
        else {}
    )
    trl.update(keys.pop("trl", {}))
    return {
        "base_model": base_model,
        "rl": method,
        "trl": trl,
        "datasets": [{"path": data.write_jsonl(tmp_path / "data.jsonl", rows(32)), "type": kind}],
        "sequence_len": 32,
        "micro_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "bf16": False,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "output_dir": str(tmp_path / "out"),
        **keys,
    }


def logged(output_dir: str, key: str) -> list[float]:
    state = sorted(Path(output_dir).glob("checkpoint-*/trainer_state.json"))[-1]
    return [e[key] for e in json.loads(state.read_text())["log_history"] if key in e]


# ------------------------------------------------------------------------------------ formatting


class DS:
    message_property_mappings = {"role": "role", "content": "content"}
    field = None


def test_preference_layouts_become_trl_columns():
    assert preference.preference({"prompt": "2+2=", "chosen": "4", "rejected": "5"}, DS) == {
        "prompt": "2+2=",
        "chosen": "4",
        "rejected": "5",
    }
    intel = {"system": "Be exact.", "question": "2+2?", "chosen": "4", "rejected": "5"}
    assert preference.chatml_intel(intel, DS) == {
        "prompt": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    argilla = {"instruction": "2+2?", "chosen_response": "4", "rejected_response": "5"}
    assert preference.chatml_argilla(argilla, DS)["prompt"] == [{"role": "user", "content": "2+2?"}]
    ultra = {
        "prompt": "2+2?",
        "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
    }
    assert preference.chatml_ultra(ultra, DS)["chosen"] == [{"role": "assistant", "content": "4"}]
    messages = {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"}
    assert preference.preference(messages, DS)["rejected"] == [
        {"role": "assistant", "content": "5"}
    ]


def test_preference_rows_that_do_not_fit_say_why():
    with pytest.raises(RowError, match="missing field 'rejected'"):
        preference.preference({"prompt": "a", "chosen": "b"}, DS)
    with pytest.raises(RowError, match="holds messages but the prompt is text"):
        preference.preference(
            {"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": "c"}, DS
        )
    with pytest.raises(RowError, match="field 'label' is not true or false"):
        preference.kto({"prompt": "a", "completion": "b", "label": "yes"}, DS)
    assert preference.kto({"prompt": "a", "completion": "b", "label": 1}, DS)["label"] is True
    assert preference.prompt({"prompt": "1+1=", "answer": "2"}, DS) == {
        "prompt": "1+1=",
        "answer": "2",
    }
    with pytest.raises(RowError, match="missing field 'label'"):
        preference.kto({"prompt": "a", "completion": "b"}, DS)
    with pytest.raises(RowError, match="field 'prompt' is empty: there is nothing to answer"):
        preference.prompt({"prompt": "  ", "answer": "2"}, DS)  # generate failed on it


def test_numeric_answers_are_read_as_text():
    # a CSV column of answers such as 12, or JSON numbers, reach the formatter as ints
    row = preference.preference({"prompt": "5+7=", "chosen": 12, "rejected": 13.5}, DS)
    assert row == {"prompt": "5+7=", "chosen": "12", "rejected": "13.5"}
    # a column with a blank cell reads as floats: 12.0 is still the answer 12
    assert (
        preference.preference({"prompt": "5+7=", "chosen": 12.0, "rejected": 13}, DS)["chosen"]
        == "12"
    )
    with pytest.raises(RowError, match="field 'chosen' is bool, not text or messages"):
        preference.preference({"prompt": "a", "chosen": True, "rejected": "c"}, DS)


def test_a_pair_that_prefers_nothing_is_skipped():
    with pytest.raises(RowError, match="chosen and rejected are the same answer"):
        preference.preference({"prompt": "1+1=", "chosen": "2 ", "rejected": "2"}, DS)
    same = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]
    with pytest.raises(RowError, match="the pair prefers nothing"):
        preference.chatml_ultra({"prompt": "1+1?", "chosen": same, "rejected": same}, DS)


def test_rl_rows_are_held_to_sequence_len_as_trl_counts_their_tokens(tiny_tokenizer):
    # the tiny tokenizer makes a token of each character here; TRL ends text answers with EOS
    def check(row, method, strategy="drop", limit=10):
        cfg = SimpleNamespace(sequence_len=limit, excess_length_strategy=strategy)
        check_length(row, method, tiny_tokenizer, cfg)

    check({"prompt": "1+2=", "chosen": "34567", "rejected": "4"}, "dpo")  # 4 + 5 + EOS
    with pytest.raises(RowError, match=r"^longer than sequence_len \(11 > 10 tokens\)$"):
        check({"prompt": "1+2=", "chosen": "4", "rejected": "345678"}, "dpo")
    check({"prompt": "1+2=", "chosen": "4", "rejected": "345678"}, "orpo", "truncate")
    with pytest.raises(RowError, match=r"the prompt alone is 10 of 10 tokens"):
        check({"prompt": "1+2=345678", "chosen": "4", "rejected": "5"}, "dpo", "truncate")
    with pytest.raises(RowError, match=r"\(11 > 10 tokens\)"):
        check({"prompt": "1+2=", "completion": "345678", "label": True}, "kto", "error")
    check({"prompt": "1+2=345678"}, "grpo")
    with pytest.raises(RowError, match=r"a prompt of 11 > 10 tokens; GRPO prompts are not cut"):
        check({"prompt": "1+2=3456789"}, "grpo", "truncate")
    # message lists are counted through the chat template, with the generation prompt
    messages = [{"role": "user", "content": "1+2="}]
    templated = len(
        tiny_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
    )
    check({"prompt": messages}, "grpo", limit=templated)
    with pytest.raises(RowError, match="longer than sequence_len"):
        check({"prompt": messages}, "grpo", limit=templated - 1)


def trl_tokenized(method: str, row: dict, tokenizer) -> tuple[int, list[int]]:
    """The prompt's tokens and each sequence's, from TRL's own preparation of ``row``."""
    from datasets import Dataset
    from trl import DPOTrainer, KTOTrainer
    from trl.data_utils import maybe_apply_chat_template
    from trl.experimental.orpo import ORPOTrainer

    if method == "orpo":
        trainer = ORPOTrainer.__new__(ORPOTrainer)  # only its row tokenization runs
        trainer.processing_class, trainer.is_encoder_decoder, trainer.max_length = (
            tokenizer,
            False,
            10**6,
        )
        out = trainer.tokenize_row(maybe_apply_chat_template(row, tokenizer))
        return len(out["prompt_input_ids"]), [
            len(out[f"{k}_input_ids"]) for k in ("chosen", "rejected")
        ]
    kind = DPOTrainer if method == "dpo" else KTOTrainer
    trainer = kind.__new__(kind)  # only its dataset preparation runs
    trainer._tokenizer, trainer.calculate_KL = tokenizer, False
    args = SimpleNamespace(
        dataset_num_proc=None,
        max_length=None,
        truncation_mode="keep_start",
        per_device_train_batch_size=1,
    )
    out = kind._prepare_dataset(trainer, Dataset.from_list([row]), tokenizer, args, "eval")[0]
    prompt = len(out["prompt_ids"])
    keys = ("chosen", "rejected") if method == "dpo" else ("completion",)
    return prompt, [prompt + len(out[f"{k}_ids"]) for k in keys]


@pytest.mark.parametrize("layout", ["text", "messages"])
@pytest.mark.parametrize("method", ["dpo", "kto", "orpo"])
def test_the_counts_are_those_of_trl_s_own_tokenization(tiny_tokenizer, method, layout):
    row = {"prompt": "12+3=", "chosen": "15", "rejected": "9"}
    if layout == "messages":
        row = preference.chatml_intel({"system": "Add.", "question": "12+3=", **row}, DS)
    if method == "kto":
        row = {"prompt": row["prompt"], "completion": row["chosen"], "label": True}
    prompt, sequences = trl_tokenized(method, row, tiny_tokenizer)
    if method == "orpo":
        assert orpo_counts(tiny_tokenizer, row) == (prompt, sequences)
        return
    assert token_count(tiny_tokenizer, row["prompt"], prompt=True) == prompt
    answers = ("chosen", "rejected") if method == "dpo" else ("completion",)
    assert [answered_count(tiny_tokenizer, row["prompt"], row[k]) for k in answers] == sequences


def test_long_preference_rows_are_skipped_and_counted(tmp_path, base_model, caplog):
    rows = data.preference_rows(32)
    for row in rows[:5]:
        row["chosen"] = "9" * 40  # past sequence_len 32
    cfg = rl_config(tmp_path, base_model, "dpo")
    data.write_jsonl(cfg["datasets"][0]["path"], rows)
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        train(load_config(cfg))
    assert "skipped 5 of 32 rows" in caplog.text
    counts = json.loads(Path(cfg["output_dir"], "ftcore_run.json").read_text())["data"]
    assert counts["datasets"]["datasets[0]"]["kept"] == 27
    assert counts["train_rows"] == 27


def test_rl_rows_longer_than_sequence_len_can_be_an_error(tmp_path, base_model):
    rows = data.prompt_rows(32)
    rows[3]["prompt"] = "1+" * 20 + "1="
    cfg = rl_config(tmp_path, base_model, "grpo", excess_length_strategy="error")
    data.write_jsonl(cfg["datasets"][0]["path"], rows)
    with pytest.raises(FtcoreError, match=r"1 row is longer than sequence_len 32 \(first: row 3"):
        train(load_config(cfg))
    assert not Path(cfg["output_dir"]).exists()


def test_no_preference_row_within_sequence_len_is_one_clear_error(tmp_path, base_model):
    cfg = rl_config(tmp_path, base_model, "dpo", sequence_len=4)  # every prompt fills it
    with pytest.raises(FtcoreError, match="none of its 32 rows fits type 'preference'"):
        train(load_config(cfg))


# -------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("adapter", [None, "lora"])
@pytest.mark.parametrize("method", ["dpo", "kto", "orpo", "grpo"])
def test_each_method_trains_and_saves(tmp_path, base_model, method, adapter):
    keys = {"adapter": adapter, "lora_r": 4} if adapter else {}
    cfg = rl_config(tmp_path, base_model, method, **keys)
    metrics = train(load_config(cfg))
    out = Path(cfg["output_dir"])
    saved = "adapter_model.safetensors" if adapter else "model.safetensors"
    assert (out / saved).is_file()
    manifest = json.loads((out / "ftcore_run.json").read_text())
    assert manifest["config"]["rl"] == method
    assert "train_loss" in metrics
    assert len(logged(cfg["output_dir"], "loss")) == 2


def test_kto_rows_of_one_label_get_ftcore_s_warning_not_trl_s_weight_advice(
    tmp_path, base_model, caplog
):
    cfg = rl_config(tmp_path, base_model, "kto", max_steps=1)
    rows = [{**row, "label": True} for row in data.kto_rows(32)]
    data.write_jsonl(cfg["datasets"][0]["path"], rows)
    with caplog.at_level(logging.WARNING):
        train(load_config(cfg))
    assert "all 32 KTO training rows are labelled true (desirable)" in caplog.text
    assert "add rows labelled false" in caplog.text
    assert "desirable_weight in" not in caplog.text


def test_dpo_loss_falls_on_a_separable_preference_set(tmp_path, base_model):
    # Chosen answers are digits, rejected ones are words: a preference one feature separates.
    rows = [{**row, "rejected": "no"} for row in data.preference_rows(64)]
    cfg = rl_config(
        tmp_path, base_model, "dpo", max_steps=20, micro_batch_size=8, learning_rate=1e-2,
        lr_scheduler="constant", trl={"beta": 1.0},
    )  # fmt: skip
    data.write_jsonl(cfg["datasets"][0]["path"], rows)
    train(load_config(cfg))
    losses = logged(cfg["output_dir"], "loss")
    assert abs(losses[0] - 0.6931) < 0.01  # log 2: the policy starts equal to the reference
    assert sum(losses[-5:]) / 5 < 0.2, losses
    assert logged(cfg["output_dir"], "rewards/accuracies")[-1] == 1.0


ROLLOUT_PLUGIN = """
import json, os
from ftcore import hookimpl

def completion_length(completions, **kwargs):
    return [float(len(c)) for c in completions]

@hookimpl
def ftcore_reward_functions(cfg):
    return [completion_length]

@hookimpl
def ftcore_on_rollouts(cfg, trainer, prompts, completions, rewards, advantages):
    with open(os.environ["ROLLOUT_LOG"], "a") as handle:
        handle.write(json.dumps({"prompts": prompts, "completions": completions, "rewards": rewards, "advantages": advantages}) + "\\n")
    if os.environ.get("ROLLOUT_FAIL"):
        raise RuntimeError("rollout logger broke")
"""


def test_grpo_rewards_reach_the_rollouts_hook(tmp_path, base_model, plugin_site, monkeypatch):
    plugin_site.add("unused", {}, {"testplugins.rollouts": ROLLOUT_PLUGIN})
    monkeypatch.setenv("ROLLOUT_LOG", str(tmp_path / "rollouts.jsonl"))
    cfg = rl_config(
        tmp_path,
        base_model,
        "grpo",
        plugins=["testplugins.rollouts"],
        trl={"reward_weights": [1.0, 0.0]},
    )
    train(load_config(cfg))
    batches = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert len(batches) == 2  # one scored batch per step
    answers = {row["prompt"]: row["answer"] for row in data.prompt_rows(32)}
    for batch in batches:
        assert set(batch["rewards"]) == {"exact_answer_reward", "completion_length"}
        assert batch["rewards"]["completion_length"] == [
            float(len(c)) for c in batch["completions"]
        ]
        expected = [
            float(c.strip().startswith(answers[p]))
            for p, c in zip(batch["prompts"], batch["completions"])
        ]
        assert batch["rewards"]["exact_answer_reward"] == expected
        assert len(batch["advantages"]) == len(batch["completions"]) == 4


def test_a_failing_rollouts_hook_is_logged_and_training_goes_on(
    tmp_path, base_model, plugin_site, monkeypatch, caplog
):
    plugin_site.add("unused", {}, {"testplugins.rollouts": ROLLOUT_PLUGIN})
    monkeypatch.setenv("ROLLOUT_LOG", str(tmp_path / "rollouts.jsonl"))
    monkeypatch.setenv("ROLLOUT_FAIL", "1")
    cfg = rl_config(
        tmp_path,
        base_model,
        "grpo",
        plugins=["testplugins.rollouts"],
        trl={"reward_weights": [1.0, 0.0]},
    )
    with caplog.at_level(logging.ERROR, logger="ftcore"):
        train(load_config(cfg))
    assert (Path(cfg["output_dir"]) / "model.safetensors").is_file()
    assert (
        caplog.messages.count("ftcore: a plugin's ftcore_on_rollouts failed; training goes on") == 2
    )


BAD_REWARD = """
def picky(prompts, completions, **kwargs):
    return [1.0 if p != "{prompt}" else 1 / 0 for p in prompts]
"""


def test_a_failing_reward_function_is_named_with_its_row(tmp_path, base_model, plugin_site):
    rows = data.prompt_rows(32)
    plugin_site.add(
        "unused", {}, {"testplugins.rewards": BAD_REWARD.replace("{prompt}", rows[0]["prompt"])}
    )
    cfg = rl_config(
        tmp_path,
        base_model,
        "grpo",
        trl={"reward_funcs": ["testplugins.rewards:picky"], "extra": {"shuffle_dataset": False}},
        shuffle=False,
    )
    with pytest.raises(FtcoreError) as info:
        train(load_config(cfg))
    message = str(info.value)
    assert message.startswith("reward function 'picky' failed on row 0 ")
    assert f"(prompt '{rows[0]['prompt']}'): ZeroDivisionError: division by zero" in message


def test_trl_settings_that_trl_would_refuse_late_are_refused_before_the_model_loads(
    tmp_path, base_model, monkeypatch
):
    import ftcore.modeling

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ftcore.modeling, "load_model", no_model)
    cfg = rl_config(tmp_path, base_model, "dpo", trl={"loss_type": "sigmoidd"})
    with pytest.raises(FtcoreError) as info:
        train(load_config(cfg))
    assert str(info.value).startswith(
        "trl.loss_type: 'sigmoidd' is not a loss of TRL's DPO trainer (did you mean 'sigmoid'?); "
        "choose from sigmoid, hinge, ipo,"
    )
    cfg = rl_config(tmp_path, base_model, "kto", trl={"loss_type": "apo_zero"})
    with pytest.raises(FtcoreError, match="did you mean 'apo_zero_unpaired'"):
        train(load_config(cfg))
    cfg = rl_config(tmp_path, base_model, "orpo", trl={"loss_type": "sigmoid"})
    with pytest.raises(FtcoreError, match="TRL's ORPO trainer has no loss variants; remove"):
        train(load_config(cfg))
    cfg = rl_config(tmp_path, base_model, "grpo", trl={"loss_type": "sequence"})  # not a loss
    with pytest.raises(FtcoreError, match=r"choose from grpo, dr_grpo, dapo, .*, vespo$"):
        train(load_config(cfg))
    cfg = rl_config(tmp_path, base_model, "grpo", trl={"reward_weights": [1.0, 0.5]})
    with pytest.raises(FtcoreError, match="has 2 weights for 1 reward functions"):
        train(load_config(cfg))
    assert not Path(cfg["output_dir"]).exists()


def test_unknown_reward_function_is_a_clear_error(tmp_path, base_model):
    cfg = rl_config(tmp_path, base_model, "grpo", trl={"reward_funcs": ["no_such_reward"]})
    with pytest.raises(FtcoreError, match="cannot find reward function 'no_such_reward'"):
        train(load_config(cfg))


def test_unreachable_vllm_server_is_a_clear_error(tmp_path, base_model):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = rl_config(
        tmp_path,
        base_model,
        "grpo",
        trl={"use_vllm": True, "vllm_server_port": port, "vllm_server_timeout": 2},
    )
    with pytest.raises(FtcoreError) as info:
        train(load_config(cfg))
    assert str(info.value).startswith(
        f"trl.use_vllm: the vLLM server at 127.0.0.1:{port} cannot be reached"
    )
    assert "set trl.use_vllm: false" in str(info.value)


NAMED_REWARD = """
from ftcore import hookimpl

def always_one(completions, **kwargs):
    return [1.0 for _ in completions]

@hookimpl
def ftcore_reward_functions(cfg):
    return [always_one]
"""


def test_a_plugin_reward_function_can_be_named_and_weighted(tmp_path, base_model, plugin_site):
    from ftcore.rl import reward_functions

    plugin_site.add("unused", {}, {"testplugins.named": NAMED_REWARD})
    cfg = rl_config(
        tmp_path, base_model, "grpo", plugins=["testplugins.named"],
        trl={"reward_funcs": ["always_one", "ftcore.testing.data:exact_answer_reward"], "reward_weights": [0.5, 1.0]},
    )  # fmt: skip
    loaded = load_config(cfg)
    names = [f.__name__ for f in reward_functions(loaded.cfg, loaded.host)]
    assert names == ["always_one", "exact_answer_reward"]  # named once, in the order given
    train(loaded)


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        (None, "a NoneType, not a list"),
        (1.0, "a float, not a list"),
        ([1.0], "1 rewards for 2 completions"),
        (["1", 0.0], "'1' for completion 0, not a number"),
        ([0.0, float("inf")], "inf for completion 1"),
    ],
)
def test_what_a_reward_function_returns_is_checked(returned, problem):
    from ftcore.rl import guard_reward

    guarded = guard_reward(lambda **kwargs: returned, "score")
    with pytest.raises(FtcoreError) as info:  # TRL's own errors here were tracebacks
        guarded(prompts=["3+4=", "1+1="], completions=["7", "2"])
    assert str(info.value) == (
        f"reward function 'score' returned {problem}; it must return a list with one number "
        "(or None, to abstain) per completion"
    )
    abstaining = guard_reward(lambda **kwargs: [None, float("nan")], "score")
    assert abstaining(completions=["7", "2"])[0] is None  # TRL's way to abstain


def test_arrays_and_async_reward_functions_stay_usable():
    import asyncio

    import numpy as np
    import torch

    from ftcore.rl import guard_reward

    for vectorised in (np.array([1.0, 0.0]), torch.tensor([1.0, 0.0])):
        score = guard_reward(lambda rewards=vectorised, **kwargs: rewards, "v")
        assert score(completions=["7", "2"]) is vectorised  # TRL takes them as they are

    async def scored(completions, **kwargs):
        return [1.0] * len(completions)

    async def wrong(completions, **kwargs):
        return "1.0"

    guarded = guard_reward(scored, "scored")
    assert inspect.iscoroutinefunction(guarded)  # TRL awaits async reward functions
    assert asyncio.run(guarded(completions=["7", "2"])) == [1.0, 1.0]
    with pytest.raises(FtcoreError, match="reward function 'wrong' returned a str, not a list"):
        asyncio.run(guard_reward(wrong, "wrong")(completions=["7"]))


def test_a_reward_file_that_does_not_import_or_a_name_that_is_no_function(tmp_path):
    from ftcore.rl import resolve_reward

    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "values.py").write_text("notfunc = 3\n")
    with pytest.raises(FtcoreError, match=r"broken\.py does not import: SyntaxError"):
        resolve_reward(f"{tmp_path / 'broken.py'}:f")
    with pytest.raises(FtcoreError, match=r"values\.py:notfunc' is not a function \(it is int 3\)"):
        resolve_reward(f"{tmp_path / 'values.py'}:notfunc")
