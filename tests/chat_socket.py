"""Helpers for the chat socket tests: open /ws/chat/, collect frames, count what was saved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from chat.models import Conversation, Message
from tests.chat_stub_engine import StubEngine, register
from tests.websocket import open_socket

TIMEOUT = 10


@pytest.fixture(name="stub")
def stub_fixture(transactional_db: Any) -> Any:
    """A ready engine answering from a script (see tests/chat_stub_engine.py)."""
    engine = StubEngine()
    register(engine.url)
    yield engine
    engine.close()


@pytest.fixture
async def loop_cleaned_up() -> AsyncIterator[None]:
    """Let the test's answers finish, then close what is bound to its event loop.

    An answer's task outlives its ``done`` frame by a few awaits (leaving its groups, ending
    its listener). The channel layer goes last: channels_redis keeps locks bound to the loop
    that made them, so a layer left over from this test would fail in the next one.
    """
    yield
    await wind_down_loop()


async def wind_down_loop() -> None:
    """Wait for the loop's other tasks (answers finishing), then close and forget the channel layers."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=TIMEOUT)
    for layer in list(channel_layers.backends.values()):
        close_pools = getattr(layer, "close_pools", None)
        if close_pools is not None:
            await close_pools()
    channel_layers.backends.clear()


async def chat_socket(user: Any) -> WebsocketCommunicator:
    communicator, connected, code = await open_socket("/ws/chat/", user)
    assert connected, f"refused with {code}"
    return communicator


async def frames_until(
    communicator: WebsocketCommunicator, kind: str, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Receive frames up to and including the first of type ``kind``."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == kind:
            return frames


def joined(frames: list[dict[str, Any]], key: str) -> str:
    return "".join(frame[key] for frame in frames if frame["type"] == "delta")


async def settled(answer_id: int, timeout: float = TIMEOUT) -> Message:
    """Wait until the answer is stored as settled (no longer streaming); return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer: Message = await database_sync_to_async(Message.objects.get)(pk=answer_id)
        if answer.status != Message.Status.STREAMING:
            return answer
        assert asyncio.get_running_loop().time() < deadline, f"answer {answer_id} was not settled in time"
        await asyncio.sleep(0.05)


@database_sync_to_async
def saved_counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()
