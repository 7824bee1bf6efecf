import logging

import pytest

from ftcore.config import load_config
from ftcore.errors import ConfigError
from ftcore_example.params import count_parameters, freeze_input_embeddings


def test_freezing_embeddings_removes_exactly_their_parameters(tiny_model):
    model = tiny_model("llama")
    trainable, total = count_parameters(model)
    assert trainable == total
    frozen = freeze_input_embeddings(model)
    assert frozen == model.get_input_embeddings().weight.numel()
    assert count_parameters(model) == (total - frozen, total)


def test_hooks_freeze_and_report_through_the_host(tiny_model, tiny_tokenizer, caplog):
    loaded = load_config({"plugins": ["example"], "example_freeze_embeddings": True})
    model = tiny_model("qwen3")
    with caplog.at_level(logging.INFO, logger="ftcore"):
        loaded.host.post_model_load(loaded.cfg, model, tiny_tokenizer)
    assert not model.get_input_embeddings().weight.requires_grad
    assert any("parameters are trainable" in message for message in caplog.messages)


def test_freezing_with_an_adapter_is_rejected():
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["example"], "example_freeze_embeddings": True, "adapter": "lora"})
    assert str(info.value.problems[0]).startswith("example_freeze_embeddings: has no effect")
