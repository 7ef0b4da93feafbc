"""Faults of the real engine (vLLM under the real supervisor, tests/stack.py): a client that goes
away, and vLLM killed with SIGKILL mid-answer.

Whether vLLM still works on a request is read from vLLM's own Prometheus figures
(``vllm:num_requests_running``), through the portal's engine metrics reader, which follows
however the portal reaches the engine. The kill test ends with the shared engine ready again,
brought back by the supervisor, so the session's other engine tests find it as before.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import Reservation, UsageCounter
from chat.models import Message
from inference.engine_metrics import read_engine_metrics
from portal.audit.models import Event
from tests.api_client import key_for, open_stream
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
)
from tests.stack import READY_TIMEOUT, Stack, wait_until

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

STORY = "Write a long story about a lighthouse keeper and his cat."
# Long enough that vLLM on these CPUs is still writing when the test acts (about a minute).
LONG = {"temperature": 0, "max_tokens": 1500}
GRACE = 1.0


def running_requests(stack: Stack) -> float:
    """vLLM's count of the requests it works on, from its /metrics."""
    reading = read_engine_metrics(stack.address())
    assert reading is not None, "vLLM's /metrics did not answer"
    return reading.running


async def running(stack: Stack) -> float:
    return await asyncio.to_thread(running_requests, stack)


async def idle_within(stack: Stack, seconds: float) -> float:
    """Wait until vLLM runs no request; return how long it took (fail after ``seconds``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while await running(stack) > 0:
        assert loop.time() - start < seconds, f"vLLM still runs a request {seconds:g} s later"
        await asyncio.sleep(0.1)
    return loop.time() - start


def api_body(stack: Stack) -> dict[str, Any]:
    return {"model": stack.served_model, "messages": [{"role": "user", "content": STORY}], "stream": True, **LONG}


@pytest.fixture
async def engine(engine_stack: Stack, settings: Any) -> Stack:
    settings.CHAT_GRACE_SECONDS = GRACE
    await database_sync_to_async(engine_stack.register_in_test_db)()
    assert await idle_within(engine_stack, 60) >= 0
    return engine_stack


async def test_a_closed_chat_socket_frees_vllm_within_a_second_of_the_grace_period(alice: Any, engine: Stack) -> None:
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": STORY, "params": LONG})
    frames = await frames_until(socket, "delta", timeout=120)
    assert await running(engine) >= 1
    await socket.disconnect()
    # Within the grace period a reload could pick the answer up again; after it, the portal
    # stops the answer and vLLM must be free within a second.
    waited = await idle_within(engine, GRACE + 1.0)
    answer = await settled(frames[0]["answer"])
    ended = (answer.status, answer.error_code)
    assert ended == ("interrupted", "detached"), f"the answer ended as {ended}, not stopped after the grace period"
    assert answer.content
    assert waited >= GRACE - 0.2, f"vLLM was free {waited:.2f} s after the socket left, before the grace period"


async def test_a_client_leaving_a_v1_stream_frees_vllm_within_a_second(alice: Any, engine: Stack) -> None:
    secret = await database_sync_to_async(key_for)(alice)
    stream = await open_stream(api_body(engine), key=secret)
    while not stream.text():
        assert not stream.ended.is_set(), stream.chunks
        await asyncio.sleep(0.05)
    assert await running(engine) >= 1
    await stream.disconnect()
    await idle_within(engine, 1.0)
    # Settled like any other ending: the reservation is closed with what was generated.
    [reservation] = await database_sync_to_async(list)(Reservation.objects.filter(channel="api"))
    assert (reservation.outcome, reservation.settled_at is not None) == ("interrupted", True)


@database_sync_to_async
def settlement() -> dict[str, Any]:
    return {
        "open_reservations": Reservation.objects.filter(settled_at__isnull=True).count(),
        "active_answers": sum(UsageCounter.objects.values_list("active_answers", flat=True)),
        "reservations": sorted(Reservation.objects.values_list("channel", "outcome")),
        "events": sorted(Event.objects.filter(action="generation").values_list("channel", "outcome")),
    }


@pytest.mark.process_lifecycle
async def test_vllm_killed_mid_answer_ends_every_stream_with_an_error_and_comes_back(alice: Any, engine: Stack) -> None:
    before = await asyncio.to_thread(engine.engine)
    secret = await database_sync_to_async(key_for)(alice)
    api = await open_stream(api_body(engine), key=secret)
    while not api.text():
        assert not api.ended.is_set(), api.chunks
        await asyncio.sleep(0.05)
    # One after the other: the test database (SQLite) takes one writer at a time.
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": STORY, "params": LONG})
    frames = await frames_until(socket, "delta", timeout=120)
    loop = asyncio.get_running_loop()
    try:
        os.kill(before["pid"], signal.SIGKILL)
        killed_at = loop.time()
        # The chat: an error frame within 2 s, then the done frame of the kept partial answer.
        while (frame := await socket.receive_json_from(timeout=10))["type"] != "error":
            frames.append(frame)
        assert loop.time() - killed_at < 2.0
        assert frame["code"] == "engine_disconnected"
        rest = await frames_until(socket, "done")
        assert rest[-1]["status"] == "interrupted"
        answer: Message = await settled(frames[0]["answer"])
        assert answer.content
        assert answer.content == joined(frames + rest, "content")
        # The /v1 stream: an error event within 2 s, then [DONE].
        await asyncio.wait_for(api.ended.wait(), 10)
        events = api.events()
        assert events[-1][1] == "[DONE]"
        error_at, error = events[-2]
        assert error["error"]["code"] == "engine_disconnected"
        assert error_at - killed_at < 2.0
        assert api.text()
        # Usage settled for both, and the audit trail says the engine crashed.
        assert await settlement() == {
            "open_reservations": 0,
            "active_answers": 0,
            "reservations": [("api", "interrupted"), ("chat", "interrupted")],
            "events": [("api", "engine_crash"), ("chat", "engine_crash")],
        }
        await socket.disconnect()
    finally:
        # The supervisor starts vLLM again; the session's other engine tests need it ready.
        def back() -> bool:
            now = engine.engine()
            return bool(now["state"] == "ready" and now["pid"] != before["pid"])

        await asyncio.to_thread(wait_until, back, max(READY_TIMEOUT, 600), "the supervisor to bring vLLM back", 1.0)
    sql = "SELECT outcome FROM audit_event WHERE action = 'engine.crashed' AND target = ?"
    crashes = await asyncio.to_thread(engine.query, sql, (engine.engine_name,))
    assert crashes, "the supervisor did not record the crash"
    assert await running(engine) == 0
