"""Reading vLLM's event stream (inference/engine_client.py) however the bytes are cut.

The engine's side is an ``httpx.MockTransport`` that sends a fixed body in reads of a
chosen size: the point is the portal's parsing of what arrives, not an engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from inference import engine_client
from inference.engine_client import ChatRequest, EngineError, stream_chat
from inference.engine_router import EngineTarget

TARGET = EngineTarget(name="e", base_url="http://engine.invalid", api_key="k", served_model="m", reasoning=True)
REQUEST = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5)


def event(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"


def piece(content: str = "", reasoning: str = "", finish: str | None = None) -> bytes:
    delta = {"content": content} if content else {"reasoning_content": reasoning} if reasoning else {}
    return event({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


BODY = (
    b": keep-alive comment\n\n"
    + piece(reasoning="think ")
    + piece("Grüße, ")
    + piece("世界")
    + piece(finish="stop")
    + event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    + event(b"[DONE]")
)


def engine_sending(body: bytes, read_size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    async def reads() -> AsyncIterator[bytes]:
        for start in range(0, len(body), read_size):
            yield body[start : start + read_size]

    class Stream(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for read in reads():
                yield read

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Stream()))
    monkeypatch.setattr(engine_client, "_client", lambda *args, **kwargs: httpx.AsyncClient(transport=transport))


def collect() -> list[engine_client.ChatDelta]:
    """Read the stream on a thread of its own: the session's browser tests (Playwright's sync
    API) keep an event loop running on the main thread, where asyncio.run would refuse to run."""

    async def read() -> list[engine_client.ChatDelta]:
        return [delta async for delta in stream_chat(REQUEST, TARGET)]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


@pytest.mark.parametrize("read_size", [1, 2, 7, 64, 10_000])
def test_events_cut_anywhere_even_inside_a_character_arrive_whole(read_size, monkeypatch):
    engine_sending(BODY, read_size, monkeypatch)
    deltas = collect()
    assert [(d.reasoning, d.content, d.finish_reason) for d in deltas[:4]] == [
        ("think ", "", None), ("", "Grüße, ", None), ("", "世界", None), ("", "", "stop"),
    ]  # fmt: skip
    assert deltas[4].usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert len(deltas) == 5


def test_a_stream_that_ends_without_done_is_a_disconnect(monkeypatch):
    engine_sending(piece("half an answer"), 5, monkeypatch)
    with pytest.raises(EngineError) as caught:
        collect()
    assert caught.value.code == "engine_disconnected"


def test_an_error_event_mid_stream_is_an_engine_error(monkeypatch):
    engine_sending(piece("a") + event({"error": {"message": "boom", "code": 500}}), 3, monkeypatch)
    with pytest.raises(EngineError) as caught:
        collect()
    assert (caught.value.code, caught.value.message, caught.value.status) == ("engine_error", "boom", 500)


def test_events_that_are_not_json_objects_are_skipped(monkeypatch):
    engine_sending(event(b"not json") + event([1, 2]) + piece("ok") + event(b"[DONE]"), 4, monkeypatch)
    assert [delta.content for delta in collect()] == ["ok"]
