"""``ftcore plugins``: what is installed, what each plugin implements, what a config activates."""

from __future__ import annotations

import json
from typing import Any

import click


def describe_installed(active: set[str]) -> list[dict[str, Any]]:
    """One row per installed plugin: name, distribution, version, status, hooks."""
    from ftcore.discovery import PluginLoadError, blocked_names, installed_plugins, load_installed
    from ftcore.errors import FtcoreError
    from ftcore.host import PluginHost

    blocked = blocked_names()
    rows = []
    for name, candidates in installed_plugins().items():
        row: dict[str, Any] = {
            "name": name,
            "distribution": ", ".join(c.distribution for c in candidates),
            "version": ", ".join(c.version for c in candidates),
            "active": name in active,
            "status": "active" if name in active else "installed",
            "hooks": [],
            "error": None,
        }
        if name in blocked:
            row["status"] = "blocked"
        elif len(candidates) > 1:
            row["status"] = "error"
            row["error"] = "provided by several distributions; uninstall all but one"
        else:
            try:
                host = PluginHost([load_installed(candidates[0])])
                row["hooks"] = host.hooks_of(name)
            except (PluginLoadError, FtcoreError) as exc:
                row["status"] = "error"
                row["error"] = str(exc)
        rows.append(row)
    return rows


def _active_names(config_path: str | None) -> set[str]:
    if not config_path:
        return set()
    from ftcore.aliases import normalize_name, resolve_alias
    from ftcore.config import read_yaml

    entries = read_yaml(config_path).get("plugins") or []
    return {normalize_name(resolve_alias(str(e)) or str(e)) for e in entries}


@click.command()
@click.option("-c", "--config", "config_path", help="Mark the plugins this config activates.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(config_path: str | None, as_json: bool) -> None:
    """List installed plugins: entry point, distribution, version, status and hooks."""
    rows = describe_installed(_active_names(config_path))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo('no plugins installed; add one with e.g. pip install "ftcore[liger]"')
        return
    headers = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS")
    table = [
        (r["name"], r["distribution"], r["version"], r["status"], ", ".join(r["hooks"]) or "-")
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [headers, *table]) for i in range(4)]
    for line in [headers, *table]:
        cells = [str(cell).ljust(width) for cell, width in zip(line[:4], widths)]
        click.echo("  ".join([*cells, line[4]]).rstrip())
    for r in rows:
        if r["error"]:
            click.echo(f"\n{r['name']}: {r['error']}", err=True)
