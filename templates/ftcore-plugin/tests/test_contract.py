from pathlib import Path

from ftcore.testing import PluginContract


class TestContract(PluginContract):
    plugin_name = "example"
    distribution = "ftcore-example"
    readme = Path(__file__).parents[1] / "README.md"
