"""An engine that hangs mid-answer: the client gets a clean error and the upstream request is aborted.

The upstream is the stub (tests/chat_stub_engine.py) told to stop sending after two pieces
and hold its connection open: a hung vLLM cannot be made on purpose, and the point is what
the portal does once no token came within ``ENGINE_CHUNK_TIMEOUT``. The stub notices when
the portal closes the connection, which is what makes a real vLLM abort the request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import Reservation, UsageCounter
from tests.api_client import call, chat, key_for
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

CHUNK_TIMEOUT = 0.5


@pytest.fixture(autouse=True)
def short_chunk_timeout(settings: Any) -> None:
    settings.ENGINE_CHUNK_TIMEOUT = CHUNK_TIMEOUT


def hanging(stub: Any) -> None:
    stub.script = Script(pieces=[("", "one "), ("", "two "), ("", "never sent")], hang_after=2)


@database_sync_to_async
def ledger_state(user: Any) -> tuple[int, int, list[str]]:
    counter = UsageCounter.objects.get(user=user)
    outcomes = list(Reservation.objects.filter(user=user).values_list("outcome", flat=True))
    return counter.active_answers, Reservation.objects.filter(settled_at__isnull=True).count(), outcomes


async def closed_upstream(stub: Any) -> bool:
    # The error went out once the timeout fired; the connection is closed on the same path.
    return await asyncio.to_thread(stub.closed_early.wait, 2)


async def test_a_hung_engine_ends_the_chat_answer_with_a_timeout_error_and_is_aborted(alice: Any, stub: Any) -> None:
    hanging(stub)
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "Hello?"})
    frames = await frames_until(socket, "done", timeout=10)
    error = next(frame for frame in frames if frame["type"] == "error")
    assert error["code"] == "engine_timeout"
    assert "stalled between two chunks" in error["message"]
    assert frames[-1]["status"] == "interrupted"
    answer = await settled(frames[0]["answer"])
    assert (answer.content, answer.error_code) == ("one two ", "engine_timeout")
    assert await closed_upstream(stub), "the portal kept the hung upstream request open"
    assert await ledger_state(alice) == (0, 0, ["interrupted"])
    await socket.disconnect()


async def test_a_hung_engine_ends_the_api_stream_with_a_timeout_event_and_is_aborted(alice: Any, stub: Any) -> None:
    hanging(stub)
    secret = await database_sync_to_async(key_for)(alice)
    reply = await call(chat(stream=True), key=secret)
    assert reply.status == 200
    events = reply.events()
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "engine_timeout"
    text = "".join(event["choices"][0]["delta"].get("content") or "" for event in events[:-2] if "choices" in event)
    assert text == "one two "
    assert await closed_upstream(stub), "the portal kept the hung upstream request open"
    assert await ledger_state(alice) == (0, 0, ["interrupted"])


async def test_a_hung_engine_fails_a_whole_api_answer_with_a_503_not_a_500(alice: Any, stub: Any) -> None:
    hanging(stub)
    secret = await database_sync_to_async(key_for)(alice)
    reply = await call(chat(), key=secret)
    assert reply.json()["error"]["code"] == "engine_timeout"
    assert reply.status == 503
    assert await closed_upstream(stub), "the portal kept the hung upstream request open"
