"""The plugin host: discovery of local plugins, hook order, combination rules."""

from __future__ import annotations

import inspect

import pytest

from ftcore import hookspecs
from ftcore.config import load_config
from ftcore.discovery import LoadedPlugin
from ftcore.host import HOOK_NAMES, PluginError, PluginHost


def test_every_hookspec_is_prefixed_and_documented():
    assert len(HOOK_NAMES) >= 24
    for name in HOOK_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and ":return:" in doc, f"{name} needs a docstring with :return:"


def test_the_facade_covers_every_hook():
    source = inspect.getsource(PluginHost)
    missing = [name for name in HOOK_NAMES if f'"{name}"' not in source]
    assert missing == []


def make_plugin(name, log, trainer=None, args=None):
    from ftcore import hookimpl

    class Plugin:
        @hookimpl
        def ftcore_configure(self, cfg):
            log.append(name)

        @hookimpl
        def ftcore_trainer_class(self, cfg):
            return trainer

        @hookimpl
        def ftcore_training_args(self, cfg):
            return args

    return LoadedPlugin(name=name, obj=Plugin())


def test_hooks_run_in_plugins_list_order():
    log: list[str] = []
    host = PluginHost([make_plugin(n, log) for n in ("first", "second", "third")])
    host.configure(cfg=None)
    assert log == ["first", "second", "third"]


def test_two_plugins_answering_an_at_most_one_hook_is_an_error():
    host = PluginHost([make_plugin("a", [], trainer=int), make_plugin("b", [], trainer=str)])
    with pytest.raises(PluginError, match="plugins 'a' and 'b' both provide the trainer class"):
        host.trainer_class(cfg=None)
    assert PluginHost([make_plugin("a", [], trainer=int)]).trainer_class(cfg=None) is int


def test_clashing_training_args_are_rejected_and_equal_ones_merge():
    host = PluginHost(
        [make_plugin("a", [], args={"x": 1, "y": 2}), make_plugin("b", [], args={"x": 1, "z": 3})]
    )
    assert host.training_args(cfg=None) == {"x": 1, "y": 2, "z": 3}
    host = PluginHost([make_plugin("a", [], args={"x": 1}), make_plugin("b", [], args={"x": 2})])
    with pytest.raises(PluginError, match="'a' and 'b' set training argument 'x'"):
        host.training_args(cfg=None)


LOCAL_PLUGIN = """
from pydantic import BaseModel, Field
from ftcore import hookimpl

class Block(BaseModel):
    model_config = {"extra": "forbid"}
    steps: int = Field(3, description="Steps.")

class Args(BaseModel):
    local_flag: bool = Field(False, description="A flag.")
    local: Block = Field(default_factory=Block, description="A nested block.")

class LocalPlugin:
    @hookimpl
    def ftcore_config_schema(self):
        return Args

    @hookimpl
    def ftcore_configure(self, cfg):
        cfg.local.steps += 1

    @hookimpl
    def ftcore_dataset_strategies(self):
        return {"my_type": object()}
"""


@pytest.mark.parametrize("entry", ["local_mod:LocalPlugin", "local_mod.LocalPlugin"])
def test_local_dotted_path_plugin_adds_keys_and_runs_hooks(plugin_site, hook_recorder, entry):
    plugin_site.add("unused", {}, {"local_mod": LOCAL_PLUGIN})
    loaded = load_config(
        {
            "plugins": [entry],
            "local_flag": True,
            "datasets": [{"path": "x", "type": "my_type"}],
        },
        ["local.steps=5"],
    )
    assert loaded.cfg.local_flag is True
    assert loaded.cfg.local.steps == 6  # 5 from the override, +1 from ftcore_configure
    assert loaded.key_owners["local_flag"] == entry
    hook_recorder.assert_order(
        "ftcore_config_schema",
        "ftcore_dataset_strategies",
        "ftcore_validate_config",
        "ftcore_model_claims",
        "ftcore_configure",
    )


def test_nested_plugin_block_rejects_unknown_keys(plugin_site):
    from ftcore.errors import ConfigError

    plugin_site.add("unused", {}, {"local_mod": LOCAL_PLUGIN})
    with pytest.raises(ConfigError) as info:
        load_config({"plugins": ["local_mod:LocalPlugin"], "local": {"stpes": 1}})
    assert str(info.value.problems[0]) == "local.stpes: unknown key (did you mean 'steps'?)"
