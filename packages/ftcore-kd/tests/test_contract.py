from pathlib import Path

from ftcore.testing import PluginContract


class TestContract(PluginContract):
    plugin_name = "kd"
    distribution = "ftcore-kd"
    readme = Path(__file__).parents[1] / "README.md"
