"""``ftcore example-count``: a plugin-contributed subcommand."""

from __future__ import annotations

import click


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
def count(model_dir: str) -> None:
    """Print the trainable and total parameters of the model in MODEL_DIR."""
    from transformers import AutoModelForCausalLM

    from ftcore_example.params import count_parameters

    trainable, total = count_parameters(AutoModelForCausalLM.from_pretrained(model_dir))
    click.echo(f"{trainable} of {total} parameters are trainable")
