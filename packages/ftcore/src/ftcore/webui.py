"""``ftcore inference --gradio``: a small web page around the prompt -> text function."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ftcore.errors import FtcoreError

API_NAME = (
    "generate"  # the endpoint scripts call: Client(url).predict(prompt, api_name="/generate")
)


def require_gradio() -> Any:
    """The ``gradio`` module, or an error that says how to install it."""
    try:
        import gradio
    except ImportError as error:
        raise FtcoreError(
            "--gradio needs Gradio: pip install 'ftcore[gradio]' (or run without --gradio)"
        ) from error
    return gradio


def build_ui(generate: Callable[[str], str], title: str, usage: str = "") -> Any:
    """A Gradio app with one prompt box and one output box, served at ``/generate`` too."""
    gr = require_gradio()
    return gr.Interface(
        fn=generate,
        inputs=gr.Textbox(label="Prompt", lines=3),
        outputs=gr.Textbox(label="Output", lines=8),
        title=title,
        description=usage,
        flagging_mode="never",
        api_name=API_NAME,
    )


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve(app: Any, host: str, port: int, block: bool = True) -> str:
    """Start the app on ``host:port`` (0: a free port) and announce its URL; serve until Ctrl-C."""
    app.queue(default_concurrency_limit=1)  # one model, one generation at a time
    port = port or free_port(host)
    try:
        app.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            show_error=True,
        )
    except OSError as error:
        raise FtcoreError(
            f"--gradio cannot serve on {host}:{port} ({error}); choose another --port (0: any free one)"
        ) from None
    url = f"http://{host}:{app.server_port}/"
    print(f"ftcore: serving on {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if block:
        app.block_thread()
    return url
