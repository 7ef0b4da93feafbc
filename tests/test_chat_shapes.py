"""One shape per concept: an answer's outcome, its done frame live and re-loaded, its status words.

The live ``done`` frame comes from the stream that settled the answer; the re-loaded one
(what a re-attaching socket gets once the answer is settled or lost) and the page's history
come from the stored row. They are built from the same fields, so they must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import streams
from chat.models import Message
from inference.answers import AnswerStatus
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


def send(content: str = "Hello?") -> dict[str, Any]:
    return {"type": "chat.send", "conversation": None, "content": content, "params": {}}


async def live_done_frame(user: Any, *, stop: bool) -> dict[str, Any]:
    socket = await chat_socket(user)
    await socket.send_json_to(send())
    await frames_until(socket, "delta")
    if stop:
        await socket.send_json_to({"type": "chat.stop"})
    done = (await frames_until(socket, "done"))[-1]
    await socket.disconnect()
    await settled(done["answer"])
    return done


async def test_a_stopped_answer_reloads_with_the_same_done_frame_and_its_usage_still_estimated(alice, stub):
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    live = await live_done_frame(alice, stop=True)
    assert live["status"] == "stopped"
    assert live["usage"]["estimated"] is True
    assert live["usage"]["completion_tokens"] > 0
    assert await streams.settled_frame(live["answer"]) == live


async def test_a_complete_answer_reloads_with_the_engines_usage_not_estimated(alice, stub):
    stub.script = Script(pieces=[("", "one "), ("", "two")], delay=0.05)
    live = await live_done_frame(alice, stop=False)
    assert live["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13, "estimated": False}
    assert await streams.settled_frame(live["answer"]) == live


async def test_an_answer_cut_off_by_the_engine_reloads_with_the_same_error(alice, stub):
    stub.script = Script(pieces=[("", "one "), ("", "two "), ("", "three")], crash_after=2, delay=0.05)
    live = await live_done_frame(alice, stop=False)
    assert (live["status"], live["error"]["code"]) == ("interrupted", "engine_disconnected")
    assert await streams.settled_frame(live["answer"]) == live


async def test_the_history_shows_an_answer_as_its_done_frame_did(alice, stub, client_for):
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    live = await live_done_frame(alice, stop=True)
    client = await database_sync_to_async(client_for)(alice)
    detail = await database_sync_to_async(client.get)(f"/chat/api/conversations/{live['conversation']}/")
    [_question, answer] = detail.json()["conversation"]["messages"]
    assert answer["id"] == live["answer"]
    for key in ("status", "content", "usage", "ttft_ms", "duration_ms", "finish_reason", "error"):
        assert answer[key] == live[key], key


def test_the_status_words_are_defined_once():
    assert Message.Status is AnswerStatus
    assert Message._meta.get_field("status").choices == AnswerStatus.choices
    assert AnswerStatus.values == ["streaming", "complete", "stopped", "interrupted", "error"]


async def test_a_browser_cannot_send_a_control_event(alice, stub):
    stub.script = Script(pieces=[("", "x ")] * 100, delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    for kind in (streams.STREAM_STOP, streams.STREAM_ATTACH, streams.VIEWER_FRAME, streams.VIEWER_SNAPSHOT):
        await socket.send_json_to({"type": kind, "answer": start["answer"], "channel": "x"})
        error = (await frames_until(socket, "error"))[-1]
        assert error["code"] == "unknown_type"
    done = (await frames_until(socket, "done"))[-1]
    assert done["status"] == "complete"
    await socket.disconnect()
