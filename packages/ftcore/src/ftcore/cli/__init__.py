"""The ``ftcore`` command line.

Only click and the standard library are imported at module level: ``ftcore --help``,
``ftcore plugins`` and ``ftcore validate`` never import torch, and start in well under a second.
Subcommands that plugins contribute are imported only when they run.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from ftcore import __version__
from ftcore.errors import FtcoreError

log = logging.getLogger("ftcore")

BUILTIN_COMMANDS = {
    "train": "ftcore.cli.run:train",
    "preprocess": "ftcore.cli.run:preprocess",
    "validate": "ftcore.cli.run:validate",
    "inference": "ftcore.cli.model:inference",
    "merge-lora": "ftcore.cli.model:merge_lora",
    "consolidate": "ftcore.cli.model:consolidate",
    "config": "ftcore.cli.config:config",
    "plugins": "ftcore.cli.plugins:plugins",
}


def import_target(target: str) -> Any:
    """Import ``"module:attribute"``."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class LazyPluginCommand(click.Command):
    """A plugin's subcommand, imported only when it is invoked (or its own ``--help`` is asked)."""

    def __init__(self, name: str, plugin: str, target: str):
        super().__init__(
            name,
            help=f"Command of plugin '{plugin}'.",
            short_help=f"[plugin {plugin}] see 'ftcore {name} --help'",
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            add_help_option=False,
        )
        self.plugin = plugin
        self.target = target

    def _load(self) -> click.Command:
        try:
            command = import_target(self.target)
        except Exception as exc:
            raise FtcoreError(
                f"command '{self.name}' of plugin '{self.plugin}' failed to import "
                f"({self.target}): {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(command, click.Command):
            raise FtcoreError(
                f"command '{self.name}' of plugin '{self.plugin}' is not a click command: {self.target}"
            )
        return command

    def invoke(self, ctx: click.Context) -> Any:
        command = self._load()
        with command.make_context(ctx.info_name, list(ctx.args), parent=ctx.parent) as sub_ctx:
            return command.invoke(sub_ctx)


def plugin_commands() -> dict[str, click.Command]:
    """Subcommands contributed by installed, unblocked plugins, active or not."""
    from ftcore.host import survey_installed

    commands: dict[str, click.Command] = {}
    for found in survey_installed():
        if found.host is None:
            if found.status == "error":
                log.warning(
                    "ftcore: skipping the commands of plugin '%s': %s", found.name, found.error
                )
            continue
        for plugin, command_name, target in found.host.cli_commands():
            if command_name in BUILTIN_COMMANDS or command_name in commands:
                log.warning(
                    "ftcore: plugin '%s' adds command '%s', which is already taken; ignored",
                    plugin,
                    command_name,
                )
                continue
            if isinstance(target, click.Command):
                commands[command_name] = target
            else:
                commands[command_name] = LazyPluginCommand(command_name, plugin, str(target))
    return commands


class FtcoreGroup(click.Group):
    """Built-in commands plus plugin commands; user errors print as one block, exit status 2."""

    _plugin_commands: dict[str, click.Command] | None = None

    def _plugins(self) -> dict[str, click.Command]:
        if self._plugin_commands is None:
            self._plugin_commands = plugin_commands()
        return self._plugin_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(BUILTIN_COMMANDS) + sorted(self._plugins())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in BUILTIN_COMMANDS:
            return import_target(BUILTIN_COMMANDS[cmd_name])
        return self._plugins().get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FtcoreError as exc:
            _close_progress_bars()
            click.echo(str(exc), err=True)
            ctx.exit(2)
        except OSError as exc:  # a path the user gave that cannot be read or written
            _close_progress_bars()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as exc:  # a command may say what was kept, as its message
            _close_progress_bars()
            click.echo(f"interrupted (Ctrl-C){f': {exc}' if str(exc) else ''}", err=True)
            ctx.exit(130)  # the shell's status for a command ended by SIGINT


def _close_progress_bars() -> None:
    """Close tqdm bars left open by an error or an interruption, so that they do not redraw
    after the message (at exit) or run into its line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


@click.group(cls=FtcoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ftcore")
def main() -> None:
    """Fine-tune language models from one YAML file.

    \b
    ftcore validate cfg.yml          check a config (core and plugin keys)
    ftcore train cfg.yml lr=1e-4     train, with overrides key=value or --key value
    ftcore plugins                   list installed plugins and their hooks
    """
    _setup_logging()
