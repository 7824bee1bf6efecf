import logging

import pytest

from ftcore.errors import FtcoreError
from ftcore_llmcompressor.recipe import normalise, read_recipe, split, to_recipe, translate_target

DOC_RECIPE = {
    "finetuning_stage": {
        "finetuning_modifiers": {
            "ConstantPruningModifier": {
                "targets": ["re:.*q_proj.weight", "re:.*down_proj\\.weight$"]
            }
        }
    },
    "quant_stage": {
        "quant_modifiers": {"QuantizationModifier": {"targets": ["Linear"], "scheme": "W8A8"}}
    },
}


def test_parameter_targets_become_module_targets():
    assert translate_target("re:.*q_proj.weight") == "re:.*q_proj$"
    assert translate_target("re:.*down_proj\\.weight$") == "re:.*down_proj$"
    assert translate_target("Linear") == "Linear"


def test_normalise_translates_starts_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        recipe = normalise(DOC_RECIPE)
    pruning = recipe["finetuning_stage"]["finetuning_modifiers"]["ConstantPruningModifier"]
    assert pruning == {"targets": ["re:.*q_proj$", "re:.*down_proj$"], "start": 0}
    assert len(caplog.messages) == 2
    assert "start" not in recipe["quant_stage"]["quant_modifiers"]["QuantizationModifier"]


def test_quantization_is_split_off_and_stages_really_load():
    training, post = split(normalise(DOC_RECIPE))
    assert list(training) == ["finetuning_stage"] and list(post) == ["quant_stage"]
    loaded = to_recipe(training)
    assert [type(m).__name__ for m in loaded.modifiers] == ["ConstantPruningModifier"]


def test_recipe_from_yaml_text_and_bad_input(tmp_path):
    text = "stage:\n  s_modifiers:\n    ConstantPruningModifier:\n      targets: [Linear]\n"
    assert read_recipe(text)["stage"]["s_modifiers"]["ConstantPruningModifier"]["targets"] == [
        "Linear"
    ]
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    assert read_recipe(str(path)) == read_recipe(text)
    with pytest.raises(FtcoreError, match="no recipe file"):
        read_recipe(str(tmp_path / "missing.yaml"))
    with pytest.raises(FtcoreError, match="give a mapping of stages"):
        read_recipe(42)


def test_stage_names_are_fixed_so_modifiers_load(caplog):
    recipe = {
        "ft": {"ft_modifiers": {"ConstantPruningModifier": {"targets": ["Linear"], "start": 0}}}
    }
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        fixed = normalise(recipe)
    assert list(fixed) == ["ft_stage"]
    assert "is renamed 'ft_stage'" in caplog.messages[0]
    assert len(to_recipe(fixed).modifiers) == 1
    with pytest.raises(FtcoreError, match="loaded 0 of its 1 modifiers"):
        to_recipe(recipe)


def test_a_recipe_without_stages_is_a_config_error(tmp_path):
    from ftcore.config import load_config
    from ftcore.errors import ConfigError

    flat = {"ConstantPruningModifier": {"targets": ["Linear"], "start": 0}}
    with pytest.raises(ConfigError, match=r"llmcompressor\.recipe: holds no modifier"):
        load_config({"plugins": ["llmcompressor"], "llmcompressor": {"recipe": flat}})


def test_modifiers_llm_compressor_refuses_are_one_message():
    unknown = {"s_stage": {"s_modifiers": {"NotAModifier": {"targets": ["Linear"], "start": 0}}}}
    with pytest.raises(FtcoreError, match="LLM Compressor cannot load it: No modifier of type"):
        to_recipe(unknown)
    bad_field = {"s_stage": {"s_modifiers": {"ConstantPruningModifier": {
        "targets": ["Linear"], "start": 0, "no_such_field": 1}}}}  # fmt: skip
    with pytest.raises(FtcoreError) as info:
        to_recipe(bad_field)
    assert str(info.value).startswith(
        "llmcompressor.recipe: ConstantPruningModifier: no_such_field"
    )


def test_targets_that_are_not_names_are_a_config_error():
    from ftcore.config import load_config
    from ftcore.errors import ConfigError

    recipe = {"s_stage": {"s_modifiers": {"ConstantPruningModifier": {"targets": 5, "start": 0}}}}
    with pytest.raises(ConfigError, match=r"s_stage.ConstantPruningModifier.targets must be"):
        load_config({"plugins": ["llmcompressor"], "llmcompressor": {"recipe": recipe}})
