"""``ftcore config show|schema|reference``."""

from __future__ import annotations

import json

import click

from ftcore.cli.run import OVERRIDE_SETTINGS, config_argument, load, overrides_argument


@click.group()
def config() -> None:
    """Inspect configs and their schema."""


@config.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
def show(config_path: str, overrides: tuple[str, ...]) -> None:
    """Print CONFIG resolved (defaults and overrides applied), secrets redacted."""
    click.echo(load(config_path, overrides, for_run=False).to_yaml(), nl=False)


def _model_for(config_path: str | None, plugin_names: tuple[str, ...]):
    from ftcore.config import read_yaml
    from ftcore.config.compose import compose_schema
    from ftcore.config.load import plugin_entries
    from ftcore.discovery import load_plugins
    from ftcore.errors import ConfigError
    from ftcore.host import PluginHost

    entries = list(plugin_names)
    if config_path:
        entries = plugin_entries(read_yaml(config_path), config_path) + entries
    plugins, problems = load_plugins(entries)
    if problems:
        raise ConfigError(problems, config_path)
    host = PluginHost(plugins)
    model, owners, problems = compose_schema(host.config_schemas())
    if problems:
        raise ConfigError(problems, config_path)
    return model, owners


plugin_option = click.option(
    "-p", "--plugin", "plugin_names", multiple=True, help="Include this plugin's keys (repeatable)."
)


@config.command()
@click.argument("config_path", metavar="[CONFIG]", required=False)
@plugin_option
def schema(config_path: str | None, plugin_names: tuple[str, ...]) -> None:
    """Print the JSON Schema of the core and the active plugins (for editor completion).

    The plugins are those CONFIG lists, plus any given with --plugin.
    """
    model, _ = _model_for(config_path, plugin_names)
    click.echo(json.dumps(model.model_json_schema(), indent=2))


@config.command()
@click.argument("config_path", metavar="[CONFIG]", required=False)
@plugin_option
def reference(config_path: str | None, plugin_names: tuple[str, ...]) -> None:
    """Print the configuration reference (Markdown) of the core and the given plugins."""
    from ftcore.config.reference import render_reference

    model, owners = _model_for(config_path, plugin_names)
    click.echo(render_reference(model, owners), nl=False)
