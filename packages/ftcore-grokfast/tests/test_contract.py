from pathlib import Path

from ftcore.testing import PluginContract


class TestContract(PluginContract):
    plugin_name = "grokfast"
    distribution = "ftcore-grokfast"
    readme = Path(__file__).parents[1] / "README.md"
