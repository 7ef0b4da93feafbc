"""A stub OpenAI-compatible streaming upstream for the relay-ceiling benchmark (not an engine).

It answers ``POST /v1/chat/completions`` with ``max_tokens`` one-token SSE chunks (as vLLM
does with ``--stream-interval 1``), paced at ``rate`` tokens per second per stream (``0``:
as fast as the socket takes them), then a finish chunk, a usage chunk and ``[DONE]``. It
also answers ``GET /health`` and ``GET /v1/models``. A raw asyncio server with HTTP/1.1
keep-alive and chunked transfer encoding, so it costs little CPU next to the web process it
feeds and needs no dependency. Every chunk's bytes are built once; when the stream falls
behind its schedule, the chunks it owes go out in one write.

Run on its own: ``python -m bench.stub_upstream --port 8199 --rate 100``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

API_KEY = "stub-upstream-key"
MODEL = "stub-upstream"
_PIECE = " tok"


def _sse(payload: Mapping[str, object] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(body), body)


_TOKEN_EVENT = _sse(
    {"id": "stub", "object": "chat.completion.chunk", "model": MODEL,
     "choices": [{"index": 0, "delta": {"content": _PIECE}, "finish_reason": None}]}
)  # fmt: skip


def _tail(tokens: int) -> bytes:
    finish = {"id": "stub", "object": "chat.completion.chunk", "model": MODEL,
              "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}  # fmt: skip
    usage = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}
    return _sse(finish) + _sse({"id": "stub", "model": MODEL, "choices": [], "usage": usage}) + _sse("[DONE]")


@dataclass
class StubUpstream:
    """The stub server; ``rate`` (tokens/s per stream, 0 = unpaced) may change between requests."""

    rate: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0
    requests: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, path, headers, body, writer):
                    break
        writer.close()

    async def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        if method == "GET" and path in ("/health", "/v1/models"):
            payload = b"{}" if path == "/health" else json.dumps({"data": [{"id": MODEL, "object": "model"}]}).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
            writer.write(head + payload)
            await writer.drain()
            return True
        if method != "POST" or path != "/v1/chat/completions" or headers.get("authorization") != f"Bearer {API_KEY}":
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return False
        self.requests += 1
        tokens = max(1, int(json.loads(body).get("max_tokens") or 16))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await self._stream(tokens, writer)
        writer.write(_chunked(_tail(tokens)) + b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _stream(self, tokens: int, writer: asyncio.StreamWriter) -> None:
        rate = self.rate
        started = time.monotonic()
        sent = 0
        while sent < tokens:
            if rate > 0:
                due = min(tokens, int((time.monotonic() - started) * rate) + 1)
                owed = max(1, due - sent)
            else:
                owed = min(tokens - sent, 16)
            writer.write(_chunked(_TOKEN_EVENT * owed))
            sent += owed
            await writer.drain()
            if rate > 0 and sent < tokens:
                await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))


class StubUpstreamThread:
    """The stub on its own event loop in a thread (for harnesses and tests that are sync)."""

    def __init__(self, rate: float = 0.0) -> None:
        self.stub = StubUpstream(rate=rate)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.stub.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="stub-upstream", daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return self.stub.url

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stub.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="tokens per second per stream (0: unpaced)")
    args = parser.parse_args()

    async def serve() -> None:
        stub = StubUpstream(rate=args.rate, port=args.port)
        await stub.start()
        print(stub.url, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
