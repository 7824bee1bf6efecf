"""``ftcore plugins``: what is installed, what each plugin implements, what a config activates."""

from __future__ import annotations

import json
from typing import Any

import click


def describe_installed(active: set[str]) -> list[dict[str, Any]]:
    """One row per installed plugin: name, distribution, version, status, hooks."""
    from ftcore.host import survey_installed

    rows = []
    for found in survey_installed():
        status = "active" if found.status == "installed" and found.name in active else found.status
        rows.append(
            {
                "name": found.name,
                "distribution": ", ".join(c.distribution for c in found.candidates),
                "version": ", ".join(c.version for c in found.candidates),
                "active": found.name in active,
                "status": status,
                "hooks": found.host.hooks_of(found.name) if found.host else [],
                "error": found.error,
            }
        )
    return rows


def _active_names(config_path: str | None) -> set[str]:
    if not config_path:
        return set()
    from ftcore.aliases import normalize_name, resolve_alias
    from ftcore.config import read_yaml
    from ftcore.config.load import plugin_entries

    entries = plugin_entries(read_yaml(config_path), config_path)
    return {normalize_name(resolve_alias(e) or e) for e in entries}


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
