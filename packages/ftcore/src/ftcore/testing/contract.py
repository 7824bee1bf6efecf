"""``PluginContract``: the tests every integration package inherits.

Subclass it in ``tests/test_contract.py``::

    from pathlib import Path
    from ftcore.testing import PluginContract

    class TestContract(PluginContract):
        plugin_name = "grokfast"
        distribution = "ftcore-grokfast"
        readme = Path(__file__).parents[1] / "README.md"
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ftcore.aliases import normalize_name
from ftcore.config.compose import compose_schema
from ftcore.config.messages import _nested_model
from ftcore.discovery import installed_plugins, load_installed
from ftcore.host import PluginHost

#: Modules an entry-point import must not pull in (they belong inside hooks).
HEAVY_MODULES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "triton")


class PluginContract:
    """Checks that a plugin package is well-formed; subclasses set the three attributes below."""

    plugin_name: str = ""
    distribution: str = ""
    readme: Path | None = None

    def _installed(self) -> Any:
        candidates = installed_plugins().get(normalize_name(self.plugin_name), [])
        assert candidates, (
            f"no entry point '{self.plugin_name}' in group 'ftcore': is {self.distribution} installed?"
        )
        assert len(candidates) == 1, (
            f"several distributions claim '{self.plugin_name}': {candidates}"
        )
        return candidates[0]

    def _host(self) -> PluginHost:
        return PluginHost([load_installed(self._installed())])

    def test_entry_point_resolves(self) -> None:
        plugin = self._installed()
        assert normalize_name(plugin.distribution) == normalize_name(self.distribution)
        assert load_installed(plugin).obj is not None

    def test_import_is_light(self) -> None:
        plugin = self._installed()
        code = (
            "import importlib.metadata as m, json, sys\n"
            f"ep = [e for e in m.entry_points(group='ftcore') if e.value == {plugin.value!r}][0]\n"
            "ep.load()\n"
            f"print(json.dumps([n for n in {list(HEAVY_MODULES)!r} if n in sys.modules]))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        heavy = json.loads(out.strip().splitlines()[-1])
        assert heavy == [], (
            f"importing plugin '{self.plugin_name}' imports {heavy}; import them in hooks"
        )

    def test_every_hookimpl_matches_a_spec(self) -> None:
        host = self._host()  # raises for unknown hooks or arguments a spec does not have
        host.pm.check_pending()
        hooks = host.hooks_of(normalize_name(self.plugin_name))
        assert hooks, f"plugin '{self.plugin_name}' implements no hook"
        obj = host.plugins[0].obj
        undocumented = [name for name in hooks if not inspect.getdoc(getattr(obj, name))]
        assert not undocumented, f"hooks without a docstring: {undocumented}"

    def _schema(self) -> type[BaseModel] | None:
        schemas = self._host().config_schemas()
        return schemas[0][1] if schemas else None

    def test_config_schema_composes_with_the_core(self) -> None:
        schema = self._schema()
        if schema is None:
            return
        _, _, problems = compose_schema([(self.plugin_name, schema)])
        assert not problems, [str(p) for p in problems]

    def test_config_keys_documented(self) -> None:
        schema = self._schema()
        if schema is None:
            return
        readme = Path(self.readme).read_text(encoding="utf-8") if self.readme else ""
        pending: list[tuple[str, type[BaseModel]]] = [("", schema)]
        while pending:
            prefix, model = pending.pop()
            for key, info in model.model_fields.items():
                assert info.description, f"config key '{prefix}{key}' has no description"
                if self.readme:
                    assert f"`{key}`" in readme, (
                        f"config key '{prefix}{key}' is not in {self.readme}"
                    )
                nested = _nested_model(info.annotation)
                if nested is not None:
                    pending.append((f"{prefix}{key}.", nested))
