"""Helpers for the /v1 API tests: a member with a key, requests through Django's real ASGI handler.

Requests go through ``portal.asgi.application`` (the same entry Daphne uses), so middleware,
``LoginRequiredMiddleware``, CSRF and the streaming/disconnect handling are the real ones.
The ledger seam of the generation service is replaced by :class:`LedgerSpy`, a stub that
records reservations and settlements (the real ledger belongs to the quota issue).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from accounts import api_keys
from inference import generation
from inference.rejections import GenerationRejected
from portal.asgi import application

PATH = "/v1/chat/completions"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[Any]:
        """The SSE ``data:`` payloads, decoded (``[DONE]`` stays a string)."""
        found = []
        for block in self.body.decode().split("\n\n"):
            if block.startswith("data: "):
                data = block[6:]
                found.append(data if data == "[DONE]" else json.loads(data))
        return found


@dataclass
class LedgerSpy:
    """Stub of the ledger seam: counts reservations, keeps settled outcomes; may refuse."""

    reserved: list[Any] = field(default_factory=list)
    settled: list[Any] = field(default_factory=list)
    refuse: GenerationRejected | None = None

    def reserve(self, prepared: Any, policy: Any) -> Any:
        if self.refuse is not None:
            raise self.refuse
        self.reserved.append(prepared)
        return prepared

    def settle(self, prepared: Any, outcome: Any) -> int | None:
        self.settled.append((prepared, outcome))
        return None


@pytest.fixture(name="ledger")
def ledger_fixture(monkeypatch: pytest.MonkeyPatch) -> LedgerSpy:
    spy = LedgerSpy()
    monkeypatch.setattr(generation, "reserve_usage", spy.reserve)
    monkeypatch.setattr(generation, "settle_usage", spy.settle)
    return spy


def key_for(user: Any, **kwargs: Any) -> str:
    kwargs.setdefault("name", "test")
    return api_keys.create_key(user, **kwargs)[1]


def _scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        # surrogatepass: a fuzzed lone surrogate goes out as the invalid UTF-8 bytes a hostile
        # client can put on the wire, instead of failing in the test before the portal sees it.
        "headers": [
            (b"host", b"testserver"),
            *(
                (k.lower().encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                for k, v in headers.items()
            ),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def call(
    body: Any = None,
    *,
    key: str | None = None,
    method: str = "POST",
    path: str = PATH,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    disconnect_after: int | None = None,
) -> Reply:
    """Send one request through the ASGI app and collect the reply.

    ``disconnect_after``: the client goes away after that many body chunks (events).
    """
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    sent = {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "http.request", "body": data, "more_body": False})
    task = asyncio.create_task(application(_scope(method, path, sent), inbox.get, outbox.put))
    start = await asyncio.wait_for(outbox.get(), 30)
    chunks: list[bytes] = []
    while True:
        message = await asyncio.wait_for(outbox.get(), 30)
        chunks.append(message.get("body", b""))
        if disconnect_after is not None and len(chunks) >= disconnect_after:
            await inbox.put({"type": "http.disconnect"})
            break
        if not message.get("more_body", False):
            break
    await asyncio.wait_for(task, 30)
    headers_out = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    return Reply(start["status"], headers_out, b"".join(chunks))


@dataclass
class OpenStream:
    """A streamed request still running: its chunks with the loop time each arrived at."""

    task: asyncio.Task[Any]
    inbox: asyncio.Queue[dict[str, Any]]
    outbox: asyncio.Queue[dict[str, Any]]
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    status: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        start = await self.outbox.get()
        self.status = start["status"]
        while True:
            message = await self.outbox.get()
            self.chunks.append((loop.time(), message.get("body", b"")))
            if not message.get("more_body", False):
                self.ended.set()
                return

    def events(self) -> list[tuple[float, Any]]:
        """The SSE ``data:`` payloads so far, decoded, each with the time its chunk arrived."""
        found: list[tuple[float, Any]] = []
        for at, body in self.chunks:
            for block in body.decode().split("\n\n"):
                if block.startswith("data: "):
                    data = block[6:]
                    found.append((at, data if data == "[DONE]" else json.loads(data)))
        return found

    def text(self) -> str:
        return "".join(
            event["choices"][0]["delta"].get("content") or ""
            for _, event in self.events()
            if isinstance(event, dict) and event.get("choices")
        )

    async def disconnect(self) -> None:
        """The client goes away (as Daphne tells Django when the socket closes)."""
        await self.inbox.put({"type": "http.disconnect"})
        await asyncio.wait_for(self.task, 30)
        if self.reader is not None:
            self.reader.cancel()


async def open_stream(body: Any, *, key: str) -> OpenStream:
    """Start a streamed POST to /v1/chat/completions through the ASGI app; read it in a task."""
    data = json.dumps(body).encode()
    sent = {"content-type": "application/json", "content-length": str(len(data)), "authorization": f"Bearer {key}"}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "http.request", "body": data, "more_body": False})
    task = asyncio.create_task(application(_scope("POST", PATH, sent), inbox.get, outbox.put))
    stream = OpenStream(task, inbox, outbox)
    stream.reader = asyncio.create_task(stream.read())
    return stream


def chat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "stub-model", "messages": [{"role": "user", "content": "Hello?"}]}
    body.update(fields)
    return body
