from pathlib import Path

from ftcore.testing import PluginContract


class TestContract(PluginContract):
    plugin_name = "nemo-gym"
    distribution = "ftcore-nemo-gym"
    readme = Path(__file__).parents[1] / "README.md"
