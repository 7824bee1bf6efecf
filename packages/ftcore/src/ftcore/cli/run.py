"""``ftcore validate``, ``ftcore train`` and ``ftcore preprocess``."""

from __future__ import annotations

import click

from ftcore.errors import FtcoreError

OVERRIDE_SETTINGS = {"ignore_unknown_options": True, "allow_extra_args": True}

config_argument = click.argument(
    "config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=str)
)
overrides_argument = click.argument("overrides", nargs=-1, type=click.UNPROCESSED)


def load(config_path: str, overrides: tuple[str, ...]):
    """Load and validate a config (imported lazily: pydantic is not needed for ``--help``)."""
    from ftcore.config import load_config

    return load_config(config_path, overrides)


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
def validate(config_path: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG: core and plugin keys, plugin cross-checks, model-part claims.

    Overrides are written key=value or --key value (dotted for nested keys).
    """
    loaded = load(config_path, overrides)
    plugins = ", ".join(loaded.host.names) or "none"
    click.echo(f"config OK: {loaded.source} (plugins: {plugins})")


def _pipeline_not_available(command: str) -> FtcoreError:
    from ftcore import __version__

    return FtcoreError(
        f"ftcore {command}: the config is valid, but this release (ftcore {__version__}) does not "
        "contain the training pipeline yet; it lands in the next release"
    )


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
def train(config_path: str, overrides: tuple[str, ...]) -> None:
    """Fine-tune the model that CONFIG describes.

    Overrides are written key=value or --key value (dotted for nested keys).
    """
    load(config_path, overrides)
    raise _pipeline_not_available("train")


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
def preprocess(config_path: str, overrides: tuple[str, ...]) -> None:
    """Tokenize the datasets of CONFIG into the cache that ``ftcore train`` reuses."""
    load(config_path, overrides)
    raise _pipeline_not_available("preprocess")
