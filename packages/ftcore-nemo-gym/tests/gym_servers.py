"""NeMo Gym's HTTP protocol on 127.0.0.1, for tests (NeMo Gym itself needs Python >= 3.12 and its
own venvs). A resources server validates ``/verify`` requests as NeMo Gym does (unknown
``responses_create_params`` keys and output items without ``type`` are a 422) and rewards a
response whose text contains the row's ``expected_answer``; a head server answers the discovery
routes. Faults can be switched on: 500s, slow answers, malformed JSON, a server that dies.

Run as a script (``python gym_servers.py --head-port N``) it serves a head and one resources
server until killed: the stand-in for NeMo Gym's CLI in the auto-start tests.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

DOOMED: list = []  # a server a test's plugin shuts down mid-run

CREATE_PARAMS = {"input", "instructions", "max_output_tokens", "metadata", "temperature", "top_p",
                 "tools", "tool_choice", "reasoning", "parallel_tool_calls", "model"}  # fmt: skip


class _Server:
    def __init__(self, handler: type, port: int = 0):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reply(handler, status: int, body: bytes, kind: str = "application/json") -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class ResourcesServer(_Server):
    """``GET /`` and ``POST /verify``; ``faults`` holds how many of the next calls misbehave."""

    def __init__(self, port: int = 0, delay: float = 0.0):
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = delay
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                _reply(self, 200, b"{}")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/verify":
                    _reply(self, 404, b'{"detail":"Not Found"}')
                    return
                with server.lock:
                    server.calls += 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    fault = next((f for f, n in server.faults.items() if n > 0), None)
                    if fault:
                        server.faults[fault] -= 1
                try:
                    time.sleep(server.delay + (5.0 if fault == "slow" else 0.0))
                    if fault == "500":
                        _reply(self, 500, b"Internal Server Error", "text/plain")
                    elif fault == "malformed":
                        _reply(self, 200, b'{"reward": ')
                    else:
                        status, answer = server.verify(json.loads(body))
                        _reply(self, status, json.dumps(answer).encode())
                finally:
                    with server.lock:
                        server.in_flight -= 1

        super().__init__(Handler, port)

    @staticmethod
    def verify(request: dict) -> tuple[int, dict]:
        params = request.get("responses_create_params")
        if not isinstance(params, dict) or "input" not in params:
            return 422, {
                "detail": [
                    {"loc": ["body", "responses_create_params", "input"], "msg": "Field required"}
                ]
            }
        unknown = sorted(set(params) - CREATE_PARAMS)
        if unknown:
            return 422, {"detail": [{"loc": ["body", "responses_create_params", unknown[0]],
                                     "msg": "Extra inputs are not permitted"}]}  # fmt: skip
        output = (request.get("response") or {}).get("output")
        if not isinstance(output, list) or any("type" not in item for item in output):
            return 422, {
                "detail": [{"loc": ["body", "response", "output"], "msg": "type required"}]
            }
        text = "".join(part.get("text", "") for item in output for part in item.get("content", []))
        expected = str(request.get("expected_answer", ""))
        reward = 1.0 if expected and expected in text else 0.0
        return 200, {**request, "reward": reward}


class HeadServer(_Server):
    """``GET /global_config_dict_yaml`` (YAML in a JSON string) and ``GET /server_instances``."""

    def __init__(
        self,
        resources: dict[str, str],
        port: int = 0,
        agents: dict[str, str] | None = None,
        agent_urls: dict[str, str] | None = None,
    ):
        config: dict = {
            "config_paths": ["x.yaml"],
            "head_server": {"host": "127.0.0.1", "port": port},
        }
        instances = []
        for name, url in resources.items():
            host, port_text = url.removeprefix("http://").split(":")
            config[name] = {
                "resources_servers": {
                    name: {"entrypoint": "app.py", "host": host, "port": int(port_text)}
                }
            }
            instances.append({"process_name": name, "server_type": "resources_servers", "name": name,
                              "host": host, "port": int(port_text), "url": url, "pid": 1})  # fmt: skip
        for agent, resources_name in (agents or {}).items():
            config[agent] = {
                "responses_api_agents": {
                    "simple_agent": {
                        "entrypoint": "app.py",
                        "resources_server": {"type": "resources_servers", "name": resources_name},
                    }
                }
            }
            if agent in (agent_urls or {}):
                instances.append({"process_name": agent, "server_type": "responses_api_agents",
                                  "name": agent, "url": agent_urls[agent], "pid": 1})  # fmt: skip
        text = json.dumps(yaml.safe_dump(config)).encode()
        listing = json.dumps(instances).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/global_config_dict_yaml":
                    _reply(self, 200, text)
                elif self.path == "/server_instances":
                    _reply(self, 200, listing)
                else:
                    _reply(self, 200, b"{}")

        super().__init__(Handler, port)


class AgentServer(_Server):
    """``POST /run`` of a simple agent: a tiny real model answers in ``turns`` turns; between turns a
    tool answers ``tool_text``. Output items carry the token ids and sampling logprobs, as NeMo Gym's
    vLLM model server gives them with ``return_token_id_information: true``; the reward is 1.0 when
    the final message has a digit."""

    def __init__(
        self, model, tokenizer, turns: int = 2, tool_text: str = " sunny", delay: float = 0.0
    ):
        import torch

        self.calls = 0
        self.requests: list[dict] = []
        self.faults: dict[str, int] = {}
        self.broken_input = None
        server = self
        tool_ids = tokenizer(tool_text, add_special_tokens=False)["input_ids"]

        def generate(
            ids: list[int], count: int, temperature: float
        ) -> tuple[list[int], list[float]]:
            out, logprobs = [], []
            generator = torch.Generator().manual_seed(len(ids) + server.calls)
            with torch.no_grad():
                for _ in range(count):
                    logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1].float()
                    probs = torch.softmax(logits / max(temperature, 1e-3), -1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                    out.append(token)
                    logprobs.append(float(torch.log(probs[token])))
            return out, logprobs

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.requests.append(body)
                time.sleep(delay)  # an episode's model calls and tools take time
                params = body["responses_create_params"]
                if server.broken_input is None and server.faults.get("first prompt"):
                    server.broken_input = params["input"]
                if params["input"] == server.broken_input:  # every episode of that prompt fails
                    _reply(self, 500, b"Internal Server Error", "text/plain")
                    return
                per_turn = max(1, int(params.get("max_output_tokens") or 4) // turns)
                prompt = tokenizer.apply_chat_template(params["input"], add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"]  # fmt: skip
                ids, items = list(prompt), []
                for turn in range(turns):
                    generated, logprobs = generate(
                        ids, per_turn, float(params.get("temperature") or 1.0)
                    )
                    text = tokenizer.decode(generated)
                    last = turn == turns - 1
                    item = (
                        {
                            "type": "message",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": text}],
                        }
                        if last
                        else {"type": "function_call", "name": "get_weather", "arguments": text}
                    )
                    items.append({**item, "id": f"item{turn}", "prompt_token_ids": ids,
                                  "generation_token_ids": generated, "generation_log_probs": logprobs})  # fmt: skip
                    if not last:
                        items.append({"type": "function_call_output", "output": tool_text})
                        ids = ids + generated + tool_ids
                server.calls += 1
                reward = 1.0 if any(c.isdigit() for c in text) else 0.0
                _reply(
                    self,
                    200,
                    json.dumps({**body, "response": {"output": items}, "reward": reward}).encode(),
                )

        super().__init__(Handler)


def main() -> None:
    """Serve like ``ng_run ... ++head_server.port=N`` would: a head and one resources server."""
    parser = argparse.ArgumentParser()
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    port = next(int(o.split("=")[1]) for o in args.overrides if o.startswith("++head_server.port="))
    print("stand-in NeMo Gym CLI:", " ".join(args.overrides), flush=True)
    time.sleep(1.0)  # servers take a moment to come up
    resources = ResourcesServer().__enter__()
    HeadServer({"math": resources.url}, port=port).__enter__()
    print(f"head server on {port}, math on {resources.port}", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()


def stop_after_step(server: _Server, step: int):
    """A trainer callback that shuts ``server`` down once ``step`` has trained (it dies mid-run)."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                server.stop()

    return Stop()
