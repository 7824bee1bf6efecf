"""Install plugins for a test without building wheels: real ``.dist-info`` metadata on ``sys.path``."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path


class PluginSite:
    """A folder laid out like ``site-packages``, holding distributions made up by a test.

    ``importlib.metadata`` reads their entry points exactly as it reads those of installed wheels.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        distribution: str,
        entry_points: dict[str, str],
        modules: dict[str, str] | None = None,
        version: str = "0.1.0",
    ) -> PluginSite:
        """Add a distribution declaring ``entry_points`` (name -> ``module[:attr]``) in group ``ftcore``.

        :param modules: module name -> source code, written next to the metadata.
        """
        info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = ["[ftcore]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in (modules or {}).items():
            path = self.root / (module.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return self

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should see this site."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.root), *filter(None, [env.get("PYTHONPATH")])]
        )
        return env

    def forget_modules(self) -> None:
        """Drop this site's modules from ``sys.modules`` (tests import them fresh)."""
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(self.root)):
                del sys.modules[name]
