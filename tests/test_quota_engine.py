"""Quotas with the real engine: the prompt reserved is the prompt vLLM bills."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import Reservation, UsageCounter
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
)
from tests.stack import Stack

pytestmark = [
    pytest.mark.engine,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("loop_cleaned_up"),
]


async def test_the_prompt_is_reserved_with_the_count_the_engine_bills(alice: Any, engine_stack: Stack) -> None:
    await database_sync_to_async(engine_stack.register_in_test_db)()
    socket = await chat_socket(alice)
    await socket.send_json_to(
        {
            "type": "chat.send",
            "conversation": None,
            "content": "What is the capital of France? Answer in one word.",
            "params": {"max_tokens": 16, "temperature": 0, "system": "You are terse."},
        }
    )
    done = (await frames_until(socket, "done", timeout=180))[-1]
    assert done["status"] == "complete", done
    billed = done["usage"]["prompt_tokens"]
    reservation = await database_sync_to_async(Reservation.objects.get)()
    # /tokenize with the chat template counted exactly what vLLM then processed.
    assert reservation.prompt_tokens == billed
    assert (reservation.used_prompt_tokens, reservation.used_completion_tokens) == (
        billed,
        done["usage"]["completion_tokens"],
    )
    counter = await database_sync_to_async(UsageCounter.objects.get)(user=alice)
    assert counter.day_tokens == done["usage"]["total_tokens"]
    assert done["remaining"]["tokens_today"] is None  # the site default is unlimited
    await socket.disconnect()
