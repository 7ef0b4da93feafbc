"""Done-when check of the plugin issue: with pii-guard on, vLLM itself receives the number masked.

The real engine (vLLM serving SmolLM2 under the supervisor) answers; between the portal and
vLLM sits a byte-for-byte TCP relay that keeps what went to vLLM's socket. Two real
witnesses: the bytes vLLM was sent, and vLLM's own count of the prompt tokens it received,
which equals its /tokenize count of the masked conversation, not of the original one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from inference.models import EngineState
from portal.registry import registry
from tests.chat_socket import chat_socket, frames_until, loop_cleaned_up  # noqa: F401 - fixture
from tests.stack import Stack

pytestmark = pytest.mark.engine

NUMBER = "13812345678"
QUESTION = f"Please call me back at {NUMBER} tomorrow."


class Relay(socketserver.ThreadingTCPServer):
    """Forwards each connection to the engine's socket ``upstream`` and keeps every byte sent towards it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.sent = bytearray()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), RelayHandler)


class RelayHandler(socketserver.BaseRequestHandler):
    server: Relay

    def handle(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(self.server.upstream)
            back = threading.Thread(target=self._pipe, args=(upstream, self.request, False), daemon=True)
            back.start()
            self._pipe(self.request, upstream, True)
            back.join(timeout=120)

    def _pipe(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if record:
                    with self.server.lock:
                        self.server.sent.extend(chunk)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay(engine_stack: Stack) -> Iterator[Relay]:
    server = Relay(engine_stack.address().socket_path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def tokens(stack: Stack, messages: list[dict[str, str]]) -> int:
    """vLLM's own count of the prompt tokens of ``messages`` (its /tokenize, chat template applied)."""
    with stack.engine_http(timeout=30) as client:
        response = client.post(
            stack.address().url("/tokenize"),
            json={"model": stack.served_model, "messages": messages},
            headers={"Authorization": f"Bearer {stack.api_key}"},
        )
    response.raise_for_status()
    return int(response.json()["count"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_with_pii_guard_on_vllm_receives_a_mainland_mobile_number_masked(
    alice: Any, engine_stack: Stack, relay: Relay
) -> None:
    assert "pii-guard" in registry["plugins"], "install pii-guard (make test) for this check"
    config = await database_sync_to_async(engine_stack.register_in_test_db)()
    relay_url = f"http://127.0.0.1:{relay.server_address[1]}"
    await database_sync_to_async(EngineState.objects.filter(engine=config).update)(base_url=relay_url)
    socket = await chat_socket(alice)
    await socket.send_json_to(
        {"type": "chat.send", "conversation": None, "content": QUESTION, "params": {"temperature": 0, "max_tokens": 16}}
    )
    frames = await frames_until(socket, "done", timeout=180)
    done = frames[-1]
    assert done["status"] == "complete", done
    await socket.disconnect()

    received = bytes(relay.sent).decode("utf-8", "replace")
    # The portal may ask /tokenize first (the quota counts the prompt): find the chat request.
    assert "POST /v1/chat/completions " in received
    head, _, rest = received[received.index("POST /v1/chat/completions ") :].partition("\r\n\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")
    )
    body = json.loads(rest.encode()[:length])
    assert NUMBER not in received, "the number reached vLLM's socket"
    assert body["messages"][-1]["content"] == "Please call me back at [REDACTED:phone] tomorrow."

    masked = tokens(engine_stack, [{"role": "user", "content": "Please call me back at [REDACTED:phone] tomorrow."}])
    original = tokens(engine_stack, [{"role": "user", "content": QUESTION}])
    assert masked != original
    assert done["usage"]["prompt_tokens"] == masked, "vLLM counted the masked prompt"
