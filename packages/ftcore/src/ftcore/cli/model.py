"""``ftcore inference`` and ``ftcore merge-lora``: use what ``ftcore train`` saved."""

from __future__ import annotations

import sys

import click

from ftcore.cli.run import OVERRIDE_SETTINGS, config_argument, load, overrides_argument
from ftcore.errors import FtcoreError


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
@click.option(
    "--prompt", help="Answer this one prompt and exit (default: read prompts from stdin)."
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Tokens to generate.",
)
@click.option(
    "--chat/--no-chat",
    default=None,
    help="Apply the chat template (default: when the config trains chat_template datasets).",
)
@click.option("--base", is_flag=True, help="Use the base model instead of the trained output.")
@click.option(
    "--gradio", "web", is_flag=True, help="Serve a web page instead (needs ftcore[gradio])."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the web page.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the web page (0: any).")  # fmt: skip
def inference(
    config_path: str,
    overrides: tuple[str, ...],
    prompt: str | None,
    max_new_tokens: int,
    chat: bool | None,
    base: bool,
    web: bool,
    host: str,
    port: int,
) -> None:
    """Generate with the model trained by CONFIG (its output_dir)."""
    from ftcore.inference import load_trained, make_generator

    loaded = load(config_path, overrides)
    if web:
        from ftcore.webui import require_gradio

        require_gradio()  # before the model loads
    model, tokenizer = load_trained(loaded.cfg, use_base=base)
    generate = make_generator(loaded, model, tokenizer, max_new_tokens=max_new_tokens, chat=chat)
    if web:
        from ftcore.webui import build_ui, serve

        title = f"ftcore inference: {loaded.cfg.output_dir if not base else loaded.cfg.base_model}"
        app = build_ui(generate, title, getattr(generate, "usage", ""))
        serve(app, host, port)
        return
    if prompt is not None:
        click.echo(generate(prompt))
        return
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo("Type a prompt and press Enter; Ctrl-D to quit.", err=True)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        if line.strip():
            try:
                click.echo(generate(line))
            except FtcoreError as error:  # a bad prompt ends that prompt, not the session
                click.echo(f"error: {error}", err=True)


@click.command(name="merge-lora", context_settings=OVERRIDE_SETTINGS)
@config_argument
@overrides_argument
@click.option("--output", help="Folder for the merged model (default: <output_dir>/merged).")
def merge_lora(config_path: str, overrides: tuple[str, ...], output: str | None) -> None:
    """Merge the LoRA adapter that CONFIG trained into its base model and save the result."""
    from ftcore.inference import merge_adapter

    target = merge_adapter(load(config_path, overrides).cfg, output)
    click.echo(f"merged model saved to {target}")


@click.command(context_settings=OVERRIDE_SETTINGS)
@config_argument
@click.argument("checkpoint", type=click.Path(file_okay=False, path_type=str))
@overrides_argument
@click.option("--output", help="Folder for the model (default: <checkpoint>-consolidated).")
def consolidate(
    config_path: str, checkpoint: str, overrides: tuple[str, ...], output: str | None
) -> None:
    """Turn CHECKPOINT of a sharded run (FSDP2, DeepSpeed ZeRO) into a normal model folder.

    CONFIG is the run's config: it builds the model (and adapter) the weights go into.
    """
    from ftcore.consolidate import consolidate as run_consolidate

    target = output or f"{checkpoint.rstrip('/')}-consolidated"
    written = run_consolidate(load(config_path, overrides, for_run=False), checkpoint, target)
    click.echo(f"consolidated model: {written}")
