from __future__ import annotations

import pytest

from ftcore.config import load_config
from ftcore.config.overrides import parse_override_args
from ftcore.config.redact import REDACTED, redact
from ftcore.errors import ConfigError, FtcoreError


def test_override_forms_are_parsed():
    assert parse_override_args(
        ["lr=1", "--micro-batch-size", "4", "--seed=7", "--strict", "--gradient_checkpointing"]
    ) == [
        ("lr", "1"),
        ("micro_batch_size", "4"),
        ("seed", "7"),
        ("strict", None),
        ("gradient_checkpointing", None),
    ]


def test_overrides_are_coerced_through_the_schema():
    cfg = load_config(
        {"datasets": [{"path": "a.jsonl"}]},
        [
            "learning_rate=1e-4",
            "--micro-batch-size",
            "4",
            "base_model=123",  # a string key keeps the text as typed
            "adapter=lora",
            "lora_target_modules=[q_proj, v_proj]",
            "datasets.0.type=alpaca",
            "special_tokens.pad_token=<pad>",
            "--sample_packing",
        ],
    ).cfg
    assert cfg.learning_rate == 1e-4
    assert cfg.micro_batch_size == 4
    assert cfg.base_model == "123"
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.datasets[0].type == "alpaca"
    assert cfg.special_tokens.pad_token == "<pad>"
    assert cfg.sample_packing is True


def test_bad_override_value_is_reported_with_its_path():
    with pytest.raises(ConfigError) as info:
        load_config({}, ["micro_batch_size=lots"])
    assert info.value.problems[0].path == "micro_batch_size"


def test_override_without_value_or_key_is_explained():
    with pytest.raises(FtcoreError, match="write key=value or --key value"):
        parse_override_args(["learning_rate"])


def test_secrets_are_redacted_but_special_tokens_are_not():
    data = {
        "hf_token": "hf_abc",
        "swanlab_api_key": "k",
        "swanlab_lark_secret": "s",
        "swanlab_lark_webhook_url": "https://hooks.example/x",
        "special_tokens": {"pad_token": "<pad>", "eos_token": "</s>"},
        "nested": [{"wandb_api_key": "w", "keep": 1}],
        "empty_token": None,
    }
    assert redact(data) == {
        "hf_token": REDACTED,
        "swanlab_api_key": REDACTED,
        "swanlab_lark_secret": REDACTED,
        "swanlab_lark_webhook_url": REDACTED,
        "special_tokens": {"pad_token": "<pad>", "eos_token": "</s>"},
        "nested": [{"wandb_api_key": REDACTED, "keep": 1}],
        "empty_token": None,
    }


def test_resolved_config_yaml_has_defaults_and_no_secret():
    text = load_config({"hf_token": "hf_secret_value"}).to_yaml()
    assert "hf_secret_value" not in text
    assert "hf_token: '***'" in text
    assert "learning_rate: 0.0002" in text


def test_a_flag_before_key_value_stays_a_flag():
    assert parse_override_args(["--sample_packing", "seed=3"]) == [
        ("sample_packing", None),
        ("seed", "3"),
    ]
    assert load_config({"base_model": "x"}, ["--sample-packing"]).cfg.sample_packing is True


@pytest.mark.parametrize("key", ["learning-rate", "max-steps", "output-dir"])
def test_a_bare_flag_for_a_key_that_is_not_yes_no_is_an_error(key):
    with pytest.raises(FtcoreError, match=f"--{key} needs a value: --{key} VALUE or"):
        load_config({"base_model": "x"}, [f"--{key}"])


def test_true_for_a_number_is_an_error():
    with pytest.raises(FtcoreError, match="learning_rate=true: learning_rate takes a number"):
        load_config({"base_model": "x"}, ["learning_rate=true"])


def test_null_unsets_an_optional_key():
    assert load_config({"base_model": "x"}, ["base_model=null"]).cfg.base_model is None


def test_webhooks_plural_keys_and_url_credentials_are_redacted():
    assert redact(
        {
            "slack_webhook_urls": ["https://hooks.example/a"],
            "my_webhook": "https://hooks.example/b",
            "openai_api_keys": ["k1"],
            "base_model": "https://user:pa55@models.example/llama",
            "tokens": ["<tool>"],
        }
    ) == {
        "slack_webhook_urls": REDACTED,
        "my_webhook": REDACTED,
        "openai_api_keys": REDACTED,
        "base_model": f"https://{REDACTED}@models.example/llama",
        "tokens": ["<tool>"],
    }


def test_secret_overrides_are_masked_in_a_command_line():
    from ftcore.config.redact import redact_argv

    assert redact_argv(
        ["ftcore", "train", "c.yml", "hf_token=abc", "--swanlab-api-key", "k", "--seed", "3",
         "swanlab.lark_webhook_url=https://x", "base_model=https://u:p@h/m"]
    ) == [
        "ftcore", "train", "c.yml", "hf_token=***", "--swanlab-api-key", "***", "--seed", "3",
        "swanlab.lark_webhook_url=***", "base_model=https://***@h/m",
    ]  # fmt: skip


def test_a_secret_with_a_wrong_type_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        load_config({"hf_token": 1234567})
    assert str(info.value.problems[0]) == (
        "hf_token: expected a string, got a value that is not shown (secret)"
    )
    assert "1234567" not in str(info.value)
