from pathlib import Path

from ftcore.testing import PluginContract


class TestContract(PluginContract):
    plugin_name = "lm-eval"
    distribution = "ftcore-lm-eval"
    readme = Path(__file__).parents[1] / "README.md"
