"""Helpers for the chat socket tests: open /ws/chat/, collect frames, count what was saved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from chat import streams
from chat.models import Conversation, Message
from inference.engine_client import aclose_client
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
async def pooled_client_closed() -> AsyncIterator[None]:
    """Close what is bound to the test's event loop when it ends.

    The engine client's pool, and the channel layer: channels_redis keeps locks bound to the
    loop that made them, so a layer left over from this test would fail in the next one.
    """
    yield
    await aclose_client()
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
    """Wait for this process to finish writing the answer; return it as stored."""
    stream = streams.running(answer_id)
    if stream is not None and stream.task is not None:
        await asyncio.wait_for(asyncio.shield(stream.task), timeout)
    answer: Message = await database_sync_to_async(Message.objects.get)(pk=answer_id)
    return answer


@database_sync_to_async
def saved_counts() -> tuple[int, int]:
    return Conversation.objects.count(), Message.objects.count()
