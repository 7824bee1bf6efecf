"""User-facing errors: printed as one block by the CLI, never as a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class FtcoreError(Exception):
    """An error caused by user input (a config, a file, an environment variable).

    The CLI prints ``str(error)`` and exits with status 2; a traceback is reserved for bugs.
    """


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Problem:
    """One problem in a config: where it is (``datasets[0].type``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(FtcoreError):
    """Every problem found in one config, reported together."""

    def __init__(self, problems: list[Problem], source: str | None = None, note: str | None = None):
        self.problems = list(problems)
        self.source = source
        self.note = note
        super().__init__(self.render())

    def render(self) -> str:
        header = f"config error in {self.source}" if self.source else "config error"
        lines = [header]
        for problem in self.problems:
            first, *rest = str(problem).splitlines()
            lines.append(f"  {first}")
            lines.extend(f"      {line}" for line in rest)
        if self.note:
            lines.append(f"  ({self.note})")
        return "\n".join(lines)
