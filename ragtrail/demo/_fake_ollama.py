"""A stand-in for an Ollama server: real HTTP on 127.0.0.1 that can be made slow, failing or hung.

It exists so the demo (and the tests of the examples and of the health checks) can show what
happens to readiness and to the audit log when a dependency degrades, without downloading a
model.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Mode = Literal["ok", "slow", "failing", "hang"]


class FakeOllama:
    """``GET /api/tags`` and ``POST /api/generate`` with a switchable behaviour.

    ``slow`` answers after ``slow_seconds``; ``hang`` holds each request until ``release()``
    (or ``stop()``), like a dependency whose process is wedged.
    """

    def __init__(self, *, slow_seconds: float = 3.0) -> None:
        self.mode: Mode = "ok"
        self.slow_seconds = slow_seconds
        self.requests = 0
        """How many requests arrived, of any kind."""
        self.generated = 0
        """How many ``/api/generate`` requests arrived."""
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval so stop() returns at once (tests start and stop many).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="ragtrail-fake-ollama", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def tags_url(self) -> str:
        """What a health check asks (``HTTPCheck(fake.tags_url)``)."""
        return f"{self.url}/api/tags"

    def start(self) -> FakeOllama:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let every hung request go (it gets no answer: the connection just closes)."""
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if unstarted
            self._server.shutdown()
        self._server.server_close()


def _handler_for(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the demo prints its own progress."""

        def _reply(self, status: int, body: dict[str, object]) -> None:
            if fake.mode == "hang":
                fake._released.wait(30)
                return
            if fake.mode == "slow":
                time.sleep(fake.slow_seconds)
            if fake.mode == "failing":
                status, body = 500, {"error": "model runner crashed"}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            fake.requests += 1
            if self.path == "/api/tags":
                self._reply(200, {"models": [{"name": "llama3.2:latest"}]})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            fake.requests += 1
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/api/generate":
                self._reply(404, {"error": "not found"})
                return
            fake.generated += 1
            prompt = str(request.get("prompt", ""))
            context = prompt.split("Context:\n", 1)[-1].split("\nQuestion:", 1)[0]
            answer = context.splitlines()[0].lstrip("- ") if context.strip() else "I don't know."
            self._reply(200, {"model": request.get("model", ""), "response": answer,
                              "done": True, "prompt_eval_count": len(prompt.split()),
                              "eval_count": len(answer.split())})

    return Handler
