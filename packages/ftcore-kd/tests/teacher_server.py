"""A real HTTP server on 127.0.0.1 speaking vLLM's OpenAI-compatible completions protocol with
``prompt_logprobs``, answered by a tiny transformers model (vLLM itself needs a GPU)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


class TeacherServer:
    def __init__(self, model, name: str = "tiny-teacher"):
        self.model, self.name = model.eval(), name
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._reply(
                        200, {"object": "list", "data": [{"id": server.name, "object": "model"}]}
                    )
                else:
                    self._reply(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if self.path != "/v1/completions" or body.get("model") != server.name:
                    self._reply(404, {"error": {"message": f"no model {body.get('model')}"}})
                    return
                prompts = body["prompt"]
                prompts = prompts if isinstance(prompts[0], list) else [prompts]
                choices = [
                    {"index": i, "text": "", "logprobs": None, "finish_reason": "length",
                     "prompt_logprobs": server.prompt_logprobs(p, body.get("prompt_logprobs") or 0)}
                    for i, p in enumerate(prompts)
                ]  # fmt: skip
                self._reply(200, {"id": "cmpl-1", "object": "text_completion",
                                  "model": server.name, "choices": choices})  # fmt: skip

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def prompt_logprobs(self, ids: list[int], k: int) -> list:
        """vLLM's layout: None for the first token, then {token id: {logprob, rank, decoded_token}}
        with the top k and the prompt's own token."""
        with torch.no_grad():
            logprobs = torch.log_softmax(
                self.model(input_ids=torch.tensor([ids])).logits[0].float(), -1
            )
        out: list = [None]
        for position in range(1, len(ids)):
            row = logprobs[position - 1]
            top = row.topk(k)
            entry = {str(int(t)): {"logprob": float(v), "rank": r + 1, "decoded_token": ""}
                     for r, (t, v) in enumerate(zip(top.indices, top.values))}  # fmt: skip
            actual = ids[position]
            rank = int((row > row[actual]).sum()) + 1
            entry.setdefault(
                str(actual), {"logprob": float(row[actual]), "rank": rank, "decoded_token": ""}
            )
            out.append(entry)
        return out

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
