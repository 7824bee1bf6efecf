"""A hook recorder: which hooks ran, in which order, with which arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftcore.host import PluginHost, observe_new_hosts


@dataclass
class HookCall:
    name: str
    kwargs: dict[str, Any]


@dataclass
class HookRecorder:
    """Records every hook call of the hosts it watches.

    Use it as a context manager to watch every host created inside (``load_config`` creates one),
    or call :meth:`watch` on an existing host.
    """

    calls: list[HookCall] = field(default_factory=list)

    def _record(self, name: str, kwargs: dict[str, Any]) -> None:
        self.calls.append(HookCall(name, dict(kwargs)))

    def watch(self, host: PluginHost) -> HookRecorder:
        host.add_observer(self._record)
        return self

    def __enter__(self) -> HookRecorder:
        self._undo = observe_new_hosts(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        self._undo()

    @property
    def names(self) -> list[str]:
        """Hook names in call order."""
        return [call.name for call in self.calls]

    def calls_of(self, name: str) -> list[HookCall]:
        return [call for call in self.calls if call.name == name]

    def assert_order(self, *names: str) -> None:
        """Assert that ``names`` were each called, first calls in this order."""
        missing = [name for name in names if name not in self.names]
        assert not missing, f"hooks never called: {missing}; called: {self.names}"
        firsts = [self.names.index(name) for name in names]
        assert firsts == sorted(firsts), f"hooks called in another order: {self.names}"
