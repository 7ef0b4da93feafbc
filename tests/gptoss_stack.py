"""The tiny gpt-oss engine next to the demo engine, on the same stack (see tests/stack.py).

``gptoss_engine`` (session scope) builds the tiny gpt-oss checkpoint once (cached under the
models dir, named by the builder's digest), creates its engine config with the
``openai_gptoss`` reasoning parser and starts a second supervisor for it. The demo engine's
supervisor is started right after, so both engines load at once; then it waits for both. Only
tests that ask for it pay for it (about 4.4 GB of memory and 40-60 s of start-up).

Its answer is fixed: reasoning "The user says hi", then "Hello! I am a tiny model."
(inference/engine_side/tiny_gptoss.py explains the weights).

``EngineTap`` is a recording pass-through in front of a real engine: it forwards each request
unchanged and streams the engine's answer back, optionally slowed down, and keeps the JSON
bodies it forwarded. It is how a test sees what the portal sent, and holds the tiny model's
quick answer back long enough to stop it halfway.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.stack import MODELS_DIR, Stack

REASONING = "The user says hi"
ANSWER = "Hello! I am a tiny model."
SERVED_MODEL = "tiny-gpt-oss"


@dataclass
class GptOssEngine:
    """The running tiny gpt-oss engine on ``stack`` (the demo engine runs there too)."""

    stack: Stack
    name: str

    @property
    def served_model(self) -> str:
        return str(self.stack.engine(self.name)["served_model"])

    @property
    def base_url(self) -> str:
        return str(self.stack.engine(self.name)["base_url"])

    @property
    def api_key(self) -> str:
        return str(self.stack.engine(self.name)["api_key"])

    def register_in_test_db(self) -> Any:
        return self.stack.register_in_test_db(self.name)


@pytest.fixture(scope="session")
def gptoss_engine(stack_base: Stack, request: pytest.FixtureRequest) -> GptOssEngine:
    """The tiny gpt-oss engine and the demo engine, both ready under their own supervisors."""
    name = f"{stack_base.engine_name}-oss"
    if name not in stack_base.supervisors:
        started = time.monotonic()
        stack_base.manage(
            "preparetinygptoss", "--models-dir", str(MODELS_DIR), "--name", name,
            "--max-model-len", "2048", "--max-num-seqs", "8", "--cpu-kv-cache-gib", "1",
            timeout=900,
        )  # fmt: skip
        prepared = time.monotonic()
        stack_base.start_supervisor(name)
        # The demo engine loads while gpt-oss does (engine_stack waits for the demo one).
        request.getfixturevalue("engine_stack")
        stack_base.wait_for_state("ready", name=name)
        print(
            f"\ntiny gpt-oss: prepared in {prepared - started:.1f} s, "
            f"ready {time.monotonic() - prepared:.1f} s after its supervisor started"
        )
    return GptOssEngine(stack=stack_base, name=name)


class EngineTap:
    """A recording HTTP pass-through to a real engine (see the module docstring)."""

    def __init__(self, upstream: str, chunk_delay: float = 0.0) -> None:
        from inference.engine_address import parse_address

        self.upstream = parse_address(upstream)  # the engine's stored address (its socket)
        self.chunk_delay = chunk_delay
        # (path, JSON body) of each request forwarded: the portal also asks /tokenize with the messages.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the answer ends when the connection closes

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with contextlib.suppress(ValueError):
                    tap.requests.append((self.path, json.loads(raw)))
                headers = {key: value for key, value in self.headers.items() if key.lower() in {"authorization",
                           "content-type", "x-request-id"}}  # fmt: skip
                with (
                    tap.upstream.client(timeout=httpx.Timeout(120.0)) as client,
                    client.stream("POST", tap.upstream.url(self.path), content=raw, headers=headers) as answer,
                ):
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                    self.end_headers()
                    try:
                        for line in answer.iter_lines():
                            self.wfile.write(line.encode() + b"\n")
                            self.wfile.flush()
                            if line.startswith("data:") and tap.chunk_delay:
                                time.sleep(tap.chunk_delay)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the portal closed the stream (a stop); closing ours aborts vLLM's

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def chat_bodies(self) -> list[dict[str, Any]]:
        """The chat completion requests forwarded so far, oldest first."""
        return [body for path, body in self.requests if path == "/v1/chat/completions"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def route_through_tap(engine_name: str, tap: EngineTap) -> None:
    """Point the test database's copy of ``engine_name`` at ``tap`` (call after register_in_test_db)."""
    from inference.models import EngineState

    EngineState.objects.filter(engine__name=engine_name).update(base_url=tap.url)
