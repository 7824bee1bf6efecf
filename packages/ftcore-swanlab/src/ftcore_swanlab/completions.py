"""Text logged to SwanLab as tables: a bounded buffer of RL completions, and plugins' samples."""

from __future__ import annotations

from collections import deque
from typing import Any

TABLE_KEY = "rlhf_completions"


def _text(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))  # a conversation: its last message
    return str(value)


class CompletionBuffer:
    """The newest ``max_size`` rows; older ones are dropped as new ones arrive."""

    def __init__(self, max_size: int):
        self.rows: deque[list[Any]] = deque(maxlen=max_size)
        self.reward_names: list[str] = []

    def add_rollouts(
        self, step: int, prompts, completions, rewards: dict[str, list[float]], advantages
    ) -> None:
        names = list(rewards)
        if names != self.reward_names:
            self.rows.clear()  # the columns changed
            self.reward_names = names
        for index, (prompt, completion) in enumerate(zip(prompts, completions)):
            row = [step, _text(prompt), _text(completion)]
            row += [float(rewards[name][index]) for name in names]
            row.append(float(advantages[index]) if advantages is not None else float("nan"))
            self.rows.append(row)

    @property
    def headers(self) -> list[str]:
        return ["step", "prompt", "completion", *self.reward_names, "advantage"]

    def flush(self, step: int) -> bool:
        """Log the buffer as a table (if anything is in it) and empty it."""
        import swanlab

        if not self.rows or not swanlab.has_run():
            return False
        table = swanlab.echarts.Table()
        table.add(headers=self.headers, rows=[list(row) for row in self.rows])
        swanlab.log({TABLE_KEY: table}, step=step)
        self.rows.clear()
        return True


def log_rows(name: str, rows: list[dict[str, str]], step: int) -> bool:
    """Log ``rows`` (column -> text) as the table ``name`` at ``step``, when a run is open."""
    import swanlab

    if not rows or not swanlab.has_run():
        return False
    table = swanlab.echarts.Table()
    table.add(headers=["step", *rows[0]], rows=[[step, *row.values()] for row in rows])
    swanlab.log({name: table}, step=step)
    return True
