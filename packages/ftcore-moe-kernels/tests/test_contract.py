from pathlib import Path

from ftcore.testing import PluginContract


class TestContract(PluginContract):
    plugin_name = "moe-kernels"
    distribution = "ftcore-moe-kernels"
    readme = Path(__file__).parents[1] / "README.md"
