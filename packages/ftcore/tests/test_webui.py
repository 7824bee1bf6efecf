"""``ftcore inference --gradio``: a real Gradio server on 127.0.0.1, queried over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from urllib.request import urlopen

import pytest

from ftcore.errors import FtcoreError
from ftcore.testing import save_tiny_model
from ftcore.webui import require_gradio

HANDLER_PLUGIN = """
from ftcore import hookimpl

@hookimpl
def ftcore_inference_handler(cfg, model, tokenizer):
    def handle(prompt):
        return "handled " + prompt
    handle.usage = "Type `:shout text` to shout."
    return handle
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_url(process: subprocess.Popen, deadline: float) -> str:
    """The URL the server announces on stderr."""
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if "serving on " in line:
            return line.split("serving on ")[1].split()[0]
    raise AssertionError("the server never announced itself:\n" + "".join(seen[-40:]))


def config_file(tmp_path, base_model, **keys) -> str:
    path = tmp_path / "run.yml"
    cfg = {
        "base_model": base_model,
        "datasets": [{"path": "unused.jsonl"}],
        "output_dir": str(tmp_path / "out"),
        **keys,
    }
    path.write_text(json.dumps(cfg))
    return str(path)


def serve_and_ask(config: str, prompt: str, env: dict | None = None) -> tuple[str, str]:
    """Start ``ftcore inference --gradio``, ask one prompt over HTTP; the answer and the page config."""
    from gradio_client import Client

    port = free_port()
    env = {**(env or os.environ), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "ftcore", "inference", config, "--base", "--gradio"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        url = wait_for_url(process, time.monotonic() + 180)
        assert url == f"http://127.0.0.1:{port}/"
        page = urlopen(url + "config", timeout=30).read().decode()
        client = Client(url, verbose=False)
        return client.predict(prompt, api_name="/generate"), page
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return save_tiny_model(str(tmp_path_factory.mktemp("model") / "tiny"), "llama", seed=0)


def test_the_page_answers_like_the_command_line(tmp_path, base_model):
    config = config_file(tmp_path, base_model)
    expected = subprocess.run(
        [sys.executable, "-m", "ftcore", "inference", config, "--base", "--prompt", "3+4="],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert expected.returncode == 0, expected.stderr
    answer, page = serve_and_ask(config, "3+4=")
    assert answer == expected.stdout.rstrip("\n")
    assert '"api_name": "generate"' in page.replace('":"', '": "')


def test_a_plugin_handler_and_its_usage_are_served(tmp_path, base_model, plugin_site):
    plugin_site.add("unused", {}, {"testplugins.handler": HANDLER_PLUGIN})
    config = config_file(tmp_path, base_model, plugins=["testplugins.handler"])
    answer, page = serve_and_ask(config, ":shout hi", env=plugin_site.env())
    assert answer == "handled :shout hi"
    assert "Type `:shout text` to shout." in page


def test_without_gradio_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed
    with pytest.raises(FtcoreError, match=r"pip install 'ftcore\[gradio\]'"):
        require_gradio()


def test_port_zero_serves_on_a_free_port_and_a_taken_port_is_a_clear_error():
    import socket

    from ftcore.webui import build_ui, serve

    app = build_ui(lambda text: text.upper(), "echo")
    url = serve(app, "127.0.0.1", 0, block=False)
    try:
        assert not url.endswith(":0/")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            other = build_ui(lambda text: text, "other")
            with pytest.raises(FtcoreError, match=r"cannot serve on 127.0.0.1:\d+"):
                serve(other, "127.0.0.1", taken.getsockname()[1], block=False)
    finally:
        app.close()
