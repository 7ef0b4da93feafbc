"""A deterministic OpenAI-compatible streaming server for chat tests that isolate the portal.

It plays a script of (reasoning, content) pieces as Server-Sent Events on 127.0.0.1, records
every request body, and notices when the portal closes the stream early (what makes vLLM
abort a request). Tests that are about the engine use the real one (tests/stack.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "stub-key"
MODEL = "stub-model"


@dataclass
class Script:
    """What the next requests get: pieces, the pause between them, and how the stream ends."""

    pieces: list[tuple[str, str]] = field(default_factory=lambda: [("", "Hello"), ("", " world")])
    delay: float = 0.0
    crash_after: int | None = None  # close the connection after this many pieces, mid-answer
    # Stop sending after this many pieces and hold the connection open (a hung engine), until
    # the portal closes it (``closed_early`` is then set).
    hang_after: int | None = None
    usage: bool = True
    first_delay: float = 0.0


class StubEngine:
    """The server; ``script`` can be changed between requests."""

    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[dict[str, Any]] = []
        self.tokenized: list[dict[str, Any]] = []
        self.tokenize_fails = False
        self.closed_early = threading.Event()
        self.finished = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="stub-engine", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if self.path == "/tokenize":
                    stub._tokenize(self, body)
                    return
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self.send_error(401)
                    return
                stub.requests.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    stub._play(self.wfile, self.connection, body)
                except (BrokenPipeError, ConnectionResetError):
                    stub.closed_early.set()

        return Handler

    def _tokenize(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """Answer /tokenize as vLLM does, counting one token per word plus 4 per message."""
        self.tokenized.append(body)
        if self.tokenize_fails:
            handler.send_error(500)
            return
        count = sum(len(str(message.get("content", "")).split()) + 4 for message in body.get("messages", []))
        payload = json.dumps({"count": count, "max_model_len": 2048, "tokens": list(range(count))}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _play(self, out: Any, connection: socket.socket, body: dict[str, Any]) -> None:
        script = self.script

        def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            out.write(b"data: " + data.encode() + b"\n\n")
            out.flush()

        time.sleep(script.first_delay)
        for index, (reasoning, content) in enumerate(script.pieces):
            if script.crash_after is not None and index >= script.crash_after:
                # The engine died: the connection drops with no finish and no [DONE].
                connection.shutdown(socket.SHUT_RDWR)
                return
            if script.hang_after is not None and index >= script.hang_after:
                self._hang(connection)
                return
            delta = {"content": content} if content else {"reasoning_content": reasoning}
            send({"id": "stub", "model": body["model"], "choices": [{"index": 0, "delta": delta}]})
            if script.delay:
                time.sleep(script.delay)
        send({"id": "stub", "model": body["model"], "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if script.usage:
            completion = len(script.pieces)
            usage = {"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion}
            send({"id": "stub", "model": body["model"], "choices": [], "usage": usage})
        send("[DONE]")
        self.finished.set()

    def _hang(self, connection: socket.socket) -> None:
        """Send nothing more; return once the portal closed the connection (or after a minute)."""
        connection.settimeout(60)
        try:
            while connection.recv(4096):
                pass  # the request was read already: nothing else is expected
        except OSError:
            return
        self.closed_early.set()


def register(url: str, *, name: str = "stub", reasoning: bool = True) -> None:
    """Register the stub at ``url`` as a ready engine in the database (sync; needs DB access)."""
    from django.utils import timezone

    from inference.models import EngineConfig, EngineState

    config = EngineConfig.objects.create(
        name=name,
        served_model_name=MODEL,
        model="/models/stub",
        desired_state=EngineConfig.Desired.RUNNING,
        reasoning_parser="openai_gptoss" if reasoning else "",
    )
    EngineState.objects.create(
        engine=config,
        state=EngineState.State.READY,
        base_url=url,
        api_key=API_KEY,
        # No supervisor runs in these tests: a heartbeat in the future keeps the state trusted.
        heartbeat_at=timezone.now() + timedelta(days=1),
    )
