"""A real HTTP server on 127.0.0.1 that answers like Lark's webhook (or fails on purpose)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LarkServer:
    """``behaviour``: ``ok`` (Lark's success body), ``error`` (HTTP 500) or ``hang`` (no answer)."""

    def __init__(self, behaviour: str = "ok", hang_seconds: float = 30.0):
        self.behaviour = behaviour
        self.hang_seconds = hang_seconds
        self.received: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append(json.loads(body))
                if server.behaviour == "hang":
                    time.sleep(server.hang_seconds)
                    return
                status, answer = (200, {"code": 0, "msg": "success"})
                if server.behaviour == "error":
                    status, answer = 500, {"code": 9499, "msg": "internal error"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/open-apis/bot/v2/hook/t0k3n"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LarkServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
