"""The exact message a user sees for each kind of bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ftcore.config import load_config
from ftcore.errors import ConfigError, FtcoreError

ALPHA_PLUGIN = """
from pydantic import BaseModel, Field
from ftcore import hookimpl

class AlphaArgs(BaseModel):
    shared_alpha: float = Field(0.5, description="A key two plugins both define.")

@hookimpl
def ftcore_config_schema():
    return AlphaArgs
"""

LOSS_PLUGIN = """
from pydantic import BaseModel, Field
from ftcore import hookimpl
from ftcore.claims import Claim, ModelPart

class Args(BaseModel):
    {key}: bool = Field(True, description="Replace the loss head.")

@hookimpl
def ftcore_config_schema():
    return Args

@hookimpl
def ftcore_model_claims(cfg):
    if cfg.{key}:
        return [Claim(ModelPart.LOSS_HEAD, key="{key}")]
"""


def error_of(config: dict, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(config, overrides)
    return str(info.value)


def test_unknown_key_suggests_the_closest_key():
    assert error_of({"learning_rte": 1e-4}) == (
        "config error in <config>\n  learning_rte: unknown key (did you mean 'learning_rate'?)"
    )


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("lr", "learning_rate"),
        ("model_name_or_path", "base_model"),
        ("per_device_train_batch_size", "micro_batch_size"),
        ("max_seq_length", "sequence_len"),
        ("flash_attention", "attn_implementation: flash_attention_2"),
    ],
)
def test_another_tool_s_name_for_a_key_gets_ftcore_s_name(key, hint):
    # spelling alone would suggest nothing, or a wrong key (model -> model_init)
    assert (
        error_of({key: 1})
        == f"config error in <config>\n  {key}: unknown key (did you mean '{hint}'?)"
    )


def test_a_key_of_a_block_given_at_the_top_level_is_pointed_into_its_block():
    assert error_of({"cpu_offload": True}) == (
        "config error in <config>\n  cpu_offload: unknown key (did you mean 'fsdp_config.cpu_offload'?)"
    )
    assert (
        "field_messages: unknown key (it is a key of each datasets or test_datasets entry)"
        in error_of({"field_messages": "messages"})
    )


def test_other_tools_names_lead_to_keys_that_exist():
    from ftcore.config.names import OTHER_TOOLS_KEYS
    from ftcore.config.schema import CoreConfig

    assert not set(OTHER_TOOLS_KEYS) & set(CoreConfig.model_fields)
    assert {hint.split(":")[0] for hint in OTHER_TOOLS_KEYS.values()} <= set(
        CoreConfig.model_fields
    )


def test_unknown_nested_key_names_its_path():
    message = error_of({"datasets": [{"path": "a.jsonl", "feild": "text"}]})
    assert message == (
        "config error in <config>\n  datasets[0].feild: unknown key (did you mean 'field'?)"
    )


def test_wrong_type_says_what_was_expected():
    assert error_of({"micro_batch_size": "two"}) == (
        "config error in <config>\n  micro_batch_size: expected an integer, got 'two'"
    )


def test_true_or_false_for_a_number_is_refused_not_read_as_one_or_zero():
    # pydantic alone reads `learning_rate: true` as 1.0 and trains with it
    message = error_of(
        {
            "learning_rate": True,
            "datasets": [{"path": "x.jsonl", "type": "completion", "temperature": False}],
            "lora_r": False,
            "fsdp_config": {"min_num_params": True},
        }
    )
    assert message.splitlines() == [
        "config error in <config>",
        "  learning_rate: expected a number, got true (the default is 0.0002)",
        "  datasets[0].temperature: expected a number, got false (the default is 1.0)",
        "  lora_r: expected an integer, got false (the default is 8)",
        "  fsdp_config.min_num_params: expected an integer, got true (the default is 0)",
    ]


def test_true_for_a_plugin_s_number_key_is_refused(plugin_site):
    plugin_site.add("ftcore-a", {"a": "a_plugin"}, {"a_plugin": ALPHA_PLUGIN})
    assert error_of({"plugins": ["a"], "shared_alpha": True}) == (
        "config error in <config>\n  shared_alpha: expected a number, got true (the default is 0.5)"
    )


def test_true_in_a_list_of_numbers_or_under_a_prefixed_name_is_refused():
    message = error_of(
        {"fsdp_config": {"fsdp_min_num_params": True}, "trl": {"reward_weights": [True, 0.5]}}
    )
    assert message.splitlines()[1:] == [
        "  fsdp_config.fsdp_min_num_params: expected an integer, got true (the default is 0)",
        "  trl.reward_weights[0]: expected a number, got true",
    ]


def test_true_stays_valid_where_a_key_takes_a_flag_or_a_number():
    from pydantic import BaseModel

    from ftcore.config.numbers import find_booleans_for_numbers

    class Keys(BaseModel):
        flag_or_count: bool | int = False
        counts: list[int] = []

    found = find_booleans_for_numbers({"flag_or_count": True, "counts": [1, True]}, Keys)
    assert [(p.path, p.message) for p in found] == [("counts[1]", "expected an integer, got true")]
    cfg = load_config({"bf16": True, "trust_remote_code": False, "learning_rate": 1}).cfg
    assert cfg.bf16 is True and cfg.learning_rate == 1.0


def test_every_problem_is_reported_at_once_in_file_order():
    message = error_of(
        {
            "adapter": "lroa",
            "datasets": [{"path": "x.jsonl", "type": "chat_templat"}],
            "bf16": "maybe",
            "lora_r": 0,
        }
    )
    assert message.splitlines() == [
        "config error in <config>",
        "  adapter: expected one of 'lora', 'qlora', got 'lroa' (did you mean 'lora'?)",
        "  datasets[0].type: unknown dataset type 'chat_templat' (did you mean 'chat_template'?)",
        "  bf16: expected true or false or 'auto', got 'maybe'",
        "  lora_r: must be greater than 0, got 0",
    ]


def not_installed_integration(monkeypatch) -> str:
    """A known integration whose package this environment lacks (made up: all may be installed)."""
    import ftcore.aliases

    monkeypatch.setattr(
        ftcore.aliases, "KNOWN_INTEGRATIONS", (*ftcore.aliases.KNOWN_INTEGRATIONS, "unreleasedq")
    )
    return "unreleasedq"


def test_missing_plugin_names_the_pip_extra(monkeypatch):
    name = not_installed_integration(monkeypatch)
    monkeypatch.setattr("ftcore.aliases.released_extras", lambda: {name, "all"})
    assert error_of({"plugins": [name]}) == (
        "config error in <config>\n"
        f"  plugins[0]: plugin '{name}' is not installed; install it with: "
        f'pip install "ftcore[{name}]"\n'
        "  (fix the plugins first; other keys were not checked)"
    )


def test_missing_unreleased_integration_says_so(monkeypatch):
    name = not_installed_integration(monkeypatch)
    monkeypatch.setattr("ftcore.aliases.released_extras", set)
    assert error_of({"plugins": [name]}).splitlines()[1] == (
        f"  plugins[0]: plugin '{name}' is not installed; "
        f"ftcore-{name} is not released with this version of ftcore yet"
    )


def test_plugin_import_failure_shows_the_failure(plugin_site):
    plugin_site.add(
        "ftcore-broken",
        {"broken": "broken_plugin"},
        {"broken_plugin": "import not_a_real_dependency\n"},
        version="1.2.0",
    )
    message = error_of({"plugins": ["broken"]})
    assert message.splitlines()[:3] == [
        "config error in <config>",
        "  plugins[0]: plugin 'broken' (ftcore-broken 1.2.0) failed to import: "
        "ModuleNotFoundError: No module named 'not_a_real_dependency'",
        f"      (raised at {plugin_site.root / 'broken_plugin.py'}:1)",
    ]


def test_duplicate_key_across_plugins_names_both(plugin_site):
    plugin_site.add("ftcore-a", {"a": "a_plugin"}, {"a_plugin": ALPHA_PLUGIN})
    plugin_site.add("ftcore-b", {"b": "b_plugin"}, {"b_plugin": ALPHA_PLUGIN})
    assert error_of({"plugins": ["a", "b"]}) == (
        "config error in <config>\n"
        "  shared_alpha: defined by both plugin 'a' and plugin 'b'; only one of them can own a key: "
        "deactivate one of them"
    )


def test_a_key_of_an_installed_plugin_not_listed_names_the_plugin(plugin_site):
    plugin_site.add("ftcore-a", {"a": "a_plugin"}, {"a_plugin": ALPHA_PLUGIN})
    plugin_site.add("ftcore-broken", {"broken": "broken_plugin"}, {"broken_plugin": "1/0\n"})
    assert error_of({"shared_alpha": 0.1, "shared_alpah": 0.1}) == (
        "config error in <config>\n"
        "  shared_alpha: unknown key: it belongs to the installed plugin 'a', which is not "
        "active; add a to plugins\n"
        "  shared_alpah: unknown key"
    )


def test_plugin_key_clashing_with_core_key_is_rejected(plugin_site):
    plugin_site.add(
        "ftcore-c",
        {"c": "c_plugin"},
        {"c_plugin": ALPHA_PLUGIN.replace("shared_alpha", "learning_rate")},
    )
    assert "learning_rate: defined by both the core and plugin 'c'" in error_of({"plugins": ["c"]})


def test_claim_conflict_names_both_plugins_and_the_fix(plugin_site):
    plugin_site.add(
        "ftcore-cce", {"cce": "cce_p"}, {"cce_p": LOSS_PLUGIN.format(key="cut_cross_entropy")}
    )
    plugin_site.add(
        "ftcore-liger",
        {"liger": "liger_p"},
        {"liger_p": LOSS_PLUGIN.format(key="liger_fused_linear_cross_entropy")},
    )
    assert error_of({"plugins": ["cce", "liger"]}) == (
        "config error in <config>\n"
        "  liger_fused_linear_cross_entropy: the loss head is replaced by both plugin 'cce' "
        "(cut_cross_entropy) and plugin 'liger' (liger_fused_linear_cross_entropy); keep one of "
        "them: set cut_cross_entropy: false or set liger_fused_linear_cross_entropy: false"
    )
    # Turning one replacement off resolves the conflict.
    loaded = load_config({"plugins": ["cce", "liger"]}, ["liger_fused_linear_cross_entropy=false"])
    assert loaded.host.names == ["cce", "liger"]


def test_blocked_plugin_says_how_to_unblock(plugin_site, monkeypatch):
    plugin_site.add("ftcore-a", {"a": "a_plugin"}, {"a_plugin": ALPHA_PLUGIN})
    monkeypatch.setenv("FTCORE_DISABLE_PLUGINS", "a,other")
    assert error_of({"plugins": ["a"]}) == (
        "config error in <config>\n"
        "  plugins[0]: plugin 'a' is blocked by FTCORE_DISABLE_PLUGINS=a,other; "
        "unset it or remove 'a' from plugins\n"
        "  (fix the plugins first; other keys were not checked)"
    )


def test_axolotl_alias_activates_the_ftcore_plugin_with_a_notice(plugin_site, caplog):
    plugin_site.add(
        "ftcore-liger", {"liger": "liger_p"}, {"liger_p": LOSS_PLUGIN.format(key="liger_rope")}
    )
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        loaded = load_config({"plugins": ["axolotl.integrations.liger.LigerPlugin"]})
    assert loaded.host.names == ["liger"]
    assert caplog.messages == [
        "ftcore: 'axolotl.integrations.liger.LigerPlugin' is the Axolotl name of plugin 'liger'; "
        "using 'liger' (write 'liger' in plugins to silence this notice)"
    ]


def test_unsupported_axolotl_integration_is_named():
    assert "is an Axolotl integration that ftcore does not provide" in error_of(
        {"plugins": ["axolotl.integrations.densemixer.DenseMixerPlugin"]}
    )


def test_two_distributions_claiming_one_name_is_an_error(plugin_site):
    plugin_site.add("ftcore-a", {"a": "a_plugin"}, {"a_plugin": ALPHA_PLUGIN})
    plugin_site.add("other-a", {"a": "a_plugin"}, version="2.0")
    assert error_of({"plugins": ["a"]}).splitlines()[1] == (
        "  plugins[0]: plugin 'a' is provided by 2 installed distributions "
        "(ftcore-a 0.1.0, other-a 2.0); uninstall all but one of them"
    )


def test_plugin_with_a_misspelled_hook_is_rejected(plugin_site):
    plugin_site.add(
        "ftcore-typo",
        {"typo": "typo_p"},
        {
            "typo_p": "from ftcore import hookimpl\n\n@hookimpl\ndef ftcore_configur(cfg):\n    pass\n"
        },
    )
    assert error_of({"plugins": ["typo"]}) == (
        "config error in <config>\n"
        "  plugins: plugin 'typo' implements unknown hook 'ftcore_configur' "
        "(did you mean 'ftcore_configure'?)"
    )


def test_plugin_validate_hook_problems_join_the_report(plugin_site):
    plugin_site.add(
        "ftcore-v",
        {"v": "v_p"},
        {
            "v_p": """
            from ftcore import hookimpl

            @hookimpl
            def ftcore_validate_config(cfg):
                if cfg.micro_batch_size > 4:
                    return [("micro_batch_size", "plugin v supports at most 4")]
            """
        },
    )
    assert error_of({"plugins": ["v"], "micro_batch_size": 8}) == (
        "config error in <config>\n  micro_batch_size: plugin v supports at most 4"
    )


def test_config_file_errors(tmp_path):
    from ftcore.config import read_yaml
    from ftcore.errors import FtcoreError

    with pytest.raises(FtcoreError, match=r"config file not found: .*nope\.yml"):
        read_yaml(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(FtcoreError, match=r"not valid YAML at line 2, column 2"):
        read_yaml(bad)
    listed = tmp_path / "list.yml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(FtcoreError, match="must hold a mapping of keys, found list"):
        read_yaml(listed)
    latin = tmp_path / "latin.yml"
    latin.write_bytes("base_model: caf\xe9\n".encode("latin-1"))
    with pytest.raises(FtcoreError, match=r"not UTF-8 text \(byte 0xe9 at offset 15\); save"):
        read_yaml(latin)
    with pytest.raises(FtcoreError, match=r"not UTF-8 text \(byte 0xff at offset 0\)"):
        read_yaml(latin.write_text("a: 1\n", encoding="utf-16") and latin)


def test_blocking_a_local_plugin_by_its_dotted_path(plugin_site, monkeypatch):
    plugin_site.add("unused", {}, {"my_plugins.alpha": ALPHA_PLUGIN})
    monkeypatch.setenv("FTCORE_DISABLE_PLUGINS", "my_plugins.alpha")
    assert "is blocked by FTCORE_DISABLE_PLUGINS" in error_of({"plugins": ["my_plugins.alpha"]})


def test_a_plugin_claim_that_is_not_a_claim_is_named(plugin_site):
    from ftcore.host import PluginError

    source = "from ftcore import hookimpl\n\n@hookimpl\ndef ftcore_model_claims(cfg):\n    return ['loss_head']\n"
    plugin_site.add("ftcore-odd", {"odd": "odd_p"}, {"odd_p": source})
    with pytest.raises(PluginError) as info:
        load_config({"plugins": ["odd"]})
    assert str(info.value) == (
        "plugin 'odd' returned 'loss_head' from ftcore_model_claims; "
        "return ftcore.claims.Claim objects"
    )


def test_unknown_optimizer_and_scheduler_are_caught_before_training():
    assert error_of({"optimizer": "adamw_torh", "lr_scheduler": "cosin"}).splitlines()[1:] == [
        "  optimizer: unknown optimizer 'adamw_torh' (did you mean 'adamw_torch'?)",
        "  lr_scheduler: unknown scheduler 'cosin' (did you mean 'cosine'?)",
    ]


def test_fractional_val_set_size_above_one_is_rejected():
    assert error_of({"val_set_size": 1.5}).splitlines()[1] == (
        "  val_set_size: a fraction below 1 or a whole number of rows, got 1.5"
    )


def test_a_run_needs_a_model_data_and_folders(tmp_path):
    afile = tmp_path / "taken"
    afile.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config({"output_dir": str(afile)}, for_run=True)
    assert [str(p) for p in info.value.problems] == [
        "base_model: required: a local model folder or a hub id",
        "datasets: required: add at least one dataset",
        f"output_dir: {afile} is a file; give a folder",
    ]
    load_config({}, for_run=False)  # inspecting a partial config is fine


def test_output_folders_that_cannot_be_written_are_named_before_the_run(tmp_path, monkeypatch):
    import os

    afile = tmp_path / "taken"
    afile.write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and Path(p) != locked)
    config = {"base_model": "org/model", "datasets": [{"path": str(afile)}]}
    with pytest.raises(ConfigError) as info:
        load_config({**config, "output_dir": str(afile / "sub"),
                     "dataset_prepared_path": str(locked / "a" / "b")}, for_run=True)  # fmt: skip
    assert [str(p) for p in info.value.problems] == [
        f"output_dir: {afile / 'sub'}: {afile} is a file",
        f"dataset_prepared_path: {locked / 'a' / 'b'}: {locked} is not writable for this user; "
        "give a folder you can write to",
    ]


def test_settings_that_cancel_out_or_do_nothing_are_errors():
    message = error_of({"base_model": "x", "adapter": "qlora", "model_init": "random",
                        "save_steps": 5, "saves_per_epoch": 2, "eval_steps": 5,
                        "evals_per_epoch": 1, "chat_template": "chatmll",
                        "datasets": [{"path": "d", "chat_template": "{{ messages }}"}]})  # fmt: skip
    assert "model_init: random weights are not quantized" in message
    assert "saves_per_epoch: and save_steps are both set; choose one" in message
    assert "evals_per_epoch: and eval_steps are both set; choose one" in message
    assert (
        "chat_template: unknown template name 'chatmll' (did you mean 'chatml'?); give a name "
        "(chatml) or Jinja text" in message
    )
    assert "datasets[0]" not in message


def test_a_key_given_twice_is_named_with_both_lines(tmp_path):
    path = tmp_path / "twice.yml"
    path.write_text("base_model: x\nlearning_rate: 1e-4\nseed: 1\nlearning_rate: 5\n")
    with pytest.raises(FtcoreError, match=r"at line 4, column 1: key 'learning_rate' appears "
                       r"twice \(lines 2 and 4\)"):  # fmt: skip
        load_config(path)


def test_lora_keys_without_an_adapter_are_an_error():
    """Else a forgotten ``adapter:`` makes a full fine-tune of what was meant as LoRA."""
    message = error_of({"base_model": "x", "lora_r": 16, "lora_target_modules": ["q_proj"]})
    assert "lora_r: is set but adapter is not; set adapter: lora (or qlora)" in message
    assert "lora_target_modules: is set but adapter is not" in message
    load_config({"base_model": "x", "adapter": "lora", "lora_r": 16})


def test_lora_on_parameters_needs_lora_without_dropout():
    message = error_of(
        {"lora_target_parameters": ["mlp.experts.gate_up_proj"], "lora_dropout": 0.1}
    )
    assert "lora_target_parameters: needs adapter: lora" in message
    assert "lora_dropout: must be 0 with lora_target_parameters" in message


def test_unknown_key_inside_an_optional_block_names_its_path():
    message = error_of({"fsdp_config": {"cpu_ofload": True}})
    assert "fsdp_config.cpu_ofload: unknown key (did you mean 'cpu_offload'?)" in message
