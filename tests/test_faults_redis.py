"""Redis goes away (with REDIS_URL: the cache and the channel layer): 503s, /readyz says so, it resumes.

The outage is real: a proxy in front of the Redis server is cut (tests/outage.py). Without
REDIS_URL the portal uses no Redis (an in-memory cache and layer), so these tests run in
CI's PostgreSQL and Redis pass.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import Reservation
from portal.consumers import CLOSE_TRY_AGAIN_LATER
from tests.api_client import call, chat, key_for
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.outage import RedisOutage, logged_in, redis_outage_fixture  # noqa: F401 - fixture
from tests.websocket import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

DOWN = "Redis (cache and live updates) is not answering"


def test_pages_answer_a_clean_503_while_redis_is_down_and_work_again_after(
    alice: Any, redis_outage: RedisOutage
) -> None:
    client = logged_in(alice)
    assert client.get("/chat/").status_code == 200
    redis_outage.cut()
    response = client.get("/chat/")
    assert response.status_code == 503
    assert DOWN in response.content.decode()
    assert "Traceback" not in response.content.decode()
    redis_outage.restore()
    assert client.get("/chat/").status_code == 200


def test_readyz_says_the_cache_and_the_channel_layer_are_down_and_ready_again_after(
    redis_outage: RedisOutage,
) -> None:
    client = Client(raise_request_exception=False)
    redis_outage.cut()
    down = client.get("/readyz")
    assert down.status_code == 503
    checks = down.json()["checks"]
    assert (checks["cache"], checks["channel_layer"]) == ({"ok": False}, {"ok": False})
    assert checks["database"] == {"ok": True}
    redis_outage.restore()
    checks = client.get("/readyz").json()["checks"]
    assert (checks["cache"], checks["channel_layer"]) == ({"ok": True}, {"ok": True})


async def test_an_api_request_while_redis_is_down_is_a_503_and_reserves_nothing(
    alice: Any, stub: Any, redis_outage: RedisOutage
) -> None:
    secret = await database_sync_to_async(key_for)(alice)
    redis_outage.cut()
    reply = await call(chat(), key=secret)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "redis_unavailable"
    assert stub.requests == []
    assert await database_sync_to_async(Reservation.objects.count)() == 0
    redis_outage.restore()
    assert (await call(chat(), key=secret)).status == 200


async def test_an_open_chat_socket_is_told_and_closed_cleanly_when_redis_goes_and_reopens_after(
    alice: Any, redis_outage: RedisOutage
) -> None:
    socket = await chat_socket(alice)
    redis_outage.cut()
    # The channel layer's read dies with the connection: a frame says why, then 1013.
    frame = await socket.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"]) == ("error", "redis_unavailable")
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER}
    await socket.wait()

    # A reconnect during the outage (the handshake joins the user's group) gets the same answer.
    during, connected, _ = await open_socket("/ws/chat/", alice)
    assert connected
    frame = await during.receive_json_from(timeout=5)
    assert frame["code"] == "redis_unavailable"
    assert (await during.receive_output(timeout=5))["code"] == CLOSE_TRY_AGAIN_LATER
    await during.wait()

    redis_outage.restore()
    again = await chat_socket(alice)
    await again.send_json_to({"type": "chat.attach", "conversation": None})
    assert (await frames_until(again, "attached"))[-1]["type"] == "attached"
    await again.disconnect()
