"""With the real engine (vLLM serving the demo model): the generation event has its real tokens."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from portal.audit.models import Event
from tests.audit_helpers import run_verify
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
)
from tests.stack import Stack

pytestmark = [
    pytest.mark.engine,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("loop_cleaned_up"),
]


@database_sync_to_async
def generation_events() -> list[Event]:
    return list(Event.objects.filter(action="generation").order_by("seq"))


async def test_a_complete_and_a_stopped_real_answer_write_one_event_each(alice: Any, engine_stack: Stack) -> None:
    await database_sync_to_async(engine_stack.register_in_test_db)()
    socket = await chat_socket(alice)
    params = {"temperature": 0, "max_tokens": 30}
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "Say hello.", "params": params})
    done = (await frames_until(socket, "done", timeout=120))[-1]
    params = {"temperature": 0, "max_tokens": 1500}
    story = "Write a long story about a lighthouse keeper."
    await socket.send_json_to(
        {"type": "chat.send", "conversation": done["conversation"], "content": story, "params": params}
    )
    await frames_until(socket, "delta", timeout=120)
    await socket.send_json_to({"type": "chat.stop"})
    stopped = (await frames_until(socket, "done", timeout=60))[-1]
    await socket.disconnect()

    complete_answer, stopped_answer = await settled(done["answer"]), await settled(stopped["answer"])
    events = await generation_events()
    assert [(event.outcome, event.request_id) for event in events] == [
        ("complete", complete_answer.request_id),
        ("stopped", stopped_answer.request_id),
    ]
    first = events[0]
    assert (first.prompt_tokens, first.completion_tokens) == (
        complete_answer.prompt_tokens,
        complete_answer.completion_tokens,
    )
    assert first.prompt_tokens
    assert first.model == engine_stack.served_model
    assert first.ttft_ms == complete_answer.ttft_ms
    assert (await database_sync_to_async(run_verify)())[0] == 0
