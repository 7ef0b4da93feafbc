"""The three ways the benchmark asks for an answer, each timing what its client sees.

- ``direct``: vLLM's own ``/v1/chat/completions`` (streamed, with usage) with the engine's key;
- ``api``: the portal's ``/v1/chat/completions`` (Server-Sent Events) with a personal API key;
- ``ws``: the portal's chat socket ``/ws/chat/`` with a session cookie (``chat.send`` → ``done``).

Each request yields a :class:`Sample`: when it was sent, when the first text arrived, when the
last did, how many frames carried text, the bytes received for it and the output tokens the
engine counted (its usage). The clients parse no more than they must, so that the client's
own CPU (it shares the machine) stays small.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import websockets


@dataclass
class Sample:
    """One answer as its client saw it (times from ``time.perf_counter``)."""

    sent: float
    first: float | None = None
    last: float | None = None
    frames: int = 0
    bytes: int = 0
    tokens: int = 0
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent

    @property
    def inter_token(self) -> float | None:
        """Mean time between output tokens after the first (the stream's decode pace)."""
        if self.first is None or self.last is None or self.tokens < 2:
            return None
        return (self.last - self.first) / (self.tokens - 1)


@dataclass
class Prompt:
    """What every mode asks: the same messages, model, temperature and output limit."""

    model: str
    content: str
    max_tokens: int
    temperature: float = 0.0


class Client(Protocol):
    async def ask(self, prompt: Prompt) -> Sample: ...

    async def close(self) -> None: ...


class SseClient:
    """An OpenAI-compatible streaming endpoint: vLLM directly, or the portal's ``/v1``.

    ``url`` is the chat completions URL; ``http`` the client that reaches it (for vLLM directly,
    one over the engine's socket: :meth:`inference.engine_address.EngineAddress.async_client`).
    """

    def __init__(self, url: str, key: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = http

    async def ask(self, prompt: Prompt) -> Sample:
        body = {
            "model": prompt.model,
            "messages": [{"role": "user", "content": prompt.content}],
            "max_tokens": prompt.max_tokens,
            "temperature": prompt.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sample = Sample(sent=time.perf_counter())
        buffer = b""
        async with self.http.stream("POST", self.url, json=body, headers=self.headers) as response:
            if response.status_code != 200:
                sample.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return sample
            async for raw in response.aiter_raw():
                now = time.perf_counter()
                sample.bytes += len(raw)
                buffer += raw
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    self._event(sample, event, now)
        return sample

    @staticmethod
    def _event(sample: Sample, event: bytes, now: float) -> None:
        if not event.startswith(b"data: ") or event == b"data: [DONE]":
            return
        if b'"content":"' in event or b'"content": "' in event:
            # Only a chunk with non-empty text is a frame a reader sees; parse just those cheaply.
            if b'"content":""' in event or b'"content": ""' in event:
                return
            sample.frames += 1
            if sample.first is None:
                sample.first = now
            sample.last = now
        elif b'"usage"' in event:
            usage = json.loads(event[6:]).get("usage") or {}
            sample.tokens = int(usage.get("completion_tokens") or 0)

    async def close(self) -> None:
        """The shared ``httpx`` client is closed by its owner."""


class ChatSocketClient:
    """One browser tab: a chat socket, one new conversation per question."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket

    @classmethod
    async def connect(cls, web_url: str, cookie: str) -> ChatSocketClient:
        ws_url = web_url.replace("http://", "ws://", 1) + "/ws/chat/"
        socket = await websockets.connect(
            ws_url, additional_headers={"Cookie": cookie}, origin=websockets.Origin(web_url),
            max_size=None, compression=None, open_timeout=30,
        )  # fmt: skip
        return cls(socket)

    async def ask(self, prompt: Prompt) -> Sample:
        params = {"model": prompt.model, "temperature": prompt.temperature, "max_tokens": prompt.max_tokens}
        sample = Sample(sent=time.perf_counter())
        await self.socket.send(json.dumps({"type": "chat.send", "conversation": None, "content": prompt.content,
                                           "params": params}))  # fmt: skip
        while True:
            message = await self.socket.recv()
            now = time.perf_counter()
            sample.bytes += len(message.encode() if isinstance(message, str) else message)
            head = message[:40] if isinstance(message, str) else message[:40].decode(errors="replace")
            if '"type": "delta"' in head or '"type":"delta"' in head:
                sample.frames += 1
                if sample.first is None:
                    sample.first = now
                sample.last = now
            elif "done" in head or "error" in head:
                frame = json.loads(message)
                if frame["type"] == "error" and "answer" not in frame:
                    sample.error = f"{frame.get('code')}: {frame.get('message')}"
                    return sample
                if frame["type"] == "done":
                    sample.tokens = int((frame.get("usage") or {}).get("completion_tokens") or 0)
                    if frame.get("status") != "complete":
                        sample.error = f"answer {frame.get('status')}: {frame.get('error')}"
                    return sample

    async def close(self) -> None:
        await self.socket.close()
