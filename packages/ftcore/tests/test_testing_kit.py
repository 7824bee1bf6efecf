"""The testing kit itself: tokenizer, tiny models, recorder, and the plugin contract."""

from __future__ import annotations

import json

import pytest
import torch

from ftcore.testing import (
    TINY_MODEL_FAMILIES,
    TINY_TOKENIZER_DIR,
    PluginContract,
    build_tiny_model,
    save_tiny_model,
)
from ftcore.testing.tokenizer import build_tiny_tokenizer


def test_shipped_tokenizer_matches_its_builder(tmp_path):
    build_tiny_tokenizer().save_pretrained(str(tmp_path))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shipped = (TINY_TOKENIZER_DIR / name).read_text()
        built = (tmp_path / name).read_text()
        if name.endswith(".json"):
            shipped, built = json.loads(shipped), json.loads(built)
        assert shipped == built, f"{name} is stale: run python -m ftcore.testing.tokenizer"


def test_tiny_tokenizer_round_trips_text_and_masks_assistant_turns(tiny_tokenizer):
    text = "12+34=46\nhello, world!"
    ids = tiny_tokenizer(text).input_ids
    assert len(ids) == len(text)  # one token per character
    assert tiny_tokenizer.decode(ids) == text
    chat = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    trained = [t for t, m in zip(chat["input_ids"], chat["assistant_masks"]) if m]
    assert tiny_tokenizer.decode(trained) == "yo<|im_end|>"


@pytest.mark.parametrize("family", TINY_MODEL_FAMILIES)
def test_tiny_model_trains_one_step(family, tiny_tokenizer):
    model = build_tiny_model(family, seed=0)
    assert model.config.model_type == family
    assert model.config.vocab_size >= len(tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer("1+1=2 and 2+2=4").input_ids])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_tiny_models_are_reproducible_from_the_seed():
    a, b = build_tiny_model("qwen3", seed=3), build_tiny_model("qwen3", seed=3)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name


def test_saved_tiny_model_loads_back_as_a_base_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = save_tiny_model(str(tmp_path / "tiny"), "mistral")
    assert AutoModelForCausalLM.from_pretrained(path).config.model_type == "mistral"
    assert len(AutoTokenizer.from_pretrained(path)) == 103


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown tiny model family 'gpt9'"):
        build_tiny_model("gpt9")


GOOD_PLUGIN = '''
from pydantic import BaseModel, Field
from ftcore import hookimpl

class Args(BaseModel):
    fake_level: int = Field(1, description="How fake.")

@hookimpl
def ftcore_config_schema():
    """Keys of the fake plugin."""
    return Args
'''


class TestContractOnAWellFormedPlugin(PluginContract):
    plugin_name = "fake"
    distribution = "ftcore-fake"

    @pytest.fixture(autouse=True)
    def _install(self, plugin_site, tmp_path, monkeypatch):
        plugin_site.add("ftcore-fake", {"fake": "fake_plugin"}, {"fake_plugin": GOOD_PLUGIN})
        monkeypatch.setenv("PYTHONPATH", plugin_site.env()["PYTHONPATH"])
        readme = tmp_path / "README.md"
        readme.write_text("| key | |\n| `fake_level` | How fake. |\n")
        self.readme = readme


def test_contract_fails_a_plugin_that_imports_torch_at_import(plugin_site, monkeypatch):
    plugin_site.add("ftcore-heavy", {"heavy": "heavy_plugin"}, {"heavy_plugin": "import torch\n"})
    monkeypatch.setenv("PYTHONPATH", plugin_site.env()["PYTHONPATH"])
    contract = PluginContract()
    contract.plugin_name, contract.distribution = "heavy", "ftcore-heavy"
    with pytest.raises(AssertionError, match=r"imports \['torch'\]"):
        contract.test_import_is_light()


def test_contract_fails_an_undocumented_key_and_a_hook_without_docstring(plugin_site, tmp_path):
    source = GOOD_PLUGIN.replace('"""Keys of the fake plugin."""', "")
    plugin_site.add("ftcore-bare", {"bare": "bare_plugin"}, {"bare_plugin": source})
    contract = PluginContract()
    contract.plugin_name, contract.distribution = "bare", "ftcore-bare"
    contract.readme = tmp_path / "README.md"
    contract.readme.write_text("nothing here\n")
    with pytest.raises(AssertionError, match="hooks without a docstring"):
        contract.test_every_hookimpl_matches_a_spec()
    with pytest.raises(AssertionError, match="config key 'fake_level' is not in"):
        contract.test_config_keys_documented()
