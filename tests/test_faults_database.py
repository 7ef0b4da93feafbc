"""The database goes away: clean 503s, /readyz says so, nothing half-written, service resumes.

The outage is real on PostgreSQL (a proxy in front of the server is cut) and a failing
connection on SQLite (tests/outage.py). The engine is the stub (tests/chat_stub_engine.py):
the point is what the portal writes, not the model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import Reservation, UsageCounter
from chat.models import Conversation, Message
from portal.audit.models import Event
from tests.api_client import call, chat, key_for
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script
from tests.conftest import PASSWORD
from tests.outage import DatabaseOutage, database_outage_fixture, logged_in  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

DOWN = "database is not answering"


@database_sync_to_async
def written() -> dict[str, Any]:
    """What the database holds of chats, reservations and generation events."""
    return {
        "conversations": Conversation.objects.count(),
        "messages": list(Message.objects.order_by("pk").values_list("role", "status")),
        "open_reservations": Reservation.objects.filter(settled_at__isnull=True).count(),
        "reservations": list(Reservation.objects.values_list("outcome", flat=True)),
        "active_answers": sum(UsageCounter.objects.values_list("active_answers", flat=True)),
        "events": list(Event.objects.filter(action="generation").values_list("outcome", flat=True)),
    }


def test_pages_answer_a_clean_503_while_the_database_is_down_and_work_again_after(
    alice: Any, database_outage: DatabaseOutage
) -> None:
    client = logged_in(alice)
    assert client.get("/chat/").status_code == 200
    database_outage.cut()
    for path in ("/", "/chat/", "/account/"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response["Retry-After"] == "10"
        page = response.content.decode()
        assert DOWN in page
        assert "Traceback" not in page
        assert "Something went wrong" not in page
    # Signing in needs the database too: a 503, not a 500.
    sign_in = Client(raise_request_exception=False).post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert sign_in.status_code == 503
    database_outage.restore()
    assert client.get("/chat/").status_code == 200


def test_readyz_says_the_database_is_down_to_anyone_and_ready_again_after(
    adam: Any, database_outage: DatabaseOutage
) -> None:
    admin = logged_in(adam)
    assert admin.get("/readyz").json()["checks"]["database"]["ok"] is True
    database_outage.cut()
    anonymous = Client(raise_request_exception=False).get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"]["database"] == {"ok": False}
    # An admin's session is in the database too: the same flags, not an error page.
    as_admin = admin.get("/readyz")
    assert as_admin.status_code == 503
    assert as_admin.json()["checks"]["database"] == {"ok": False}
    database_outage.restore()
    assert admin.get("/readyz").json()["checks"]["database"]["ok"] is True


async def test_an_api_request_during_the_outage_is_a_503_in_openai_shape_and_reserves_nothing(
    alice: Any, stub: Any, database_outage: DatabaseOutage
) -> None:
    secret = await database_sync_to_async(key_for)(alice)
    database_outage.cut()
    reply = await call(chat(stream=True), key=secret)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "database_unavailable"
    assert reply.json()["error"]["type"] == "service_unavailable_error"
    assert reply.headers["retry-after"] == "10"
    assert stub.requests == []
    database_outage.restore()
    assert await written() == {"conversations": 0, "messages": [], "open_reservations": 0, "reservations": [],
                               "active_answers": 0, "events": []}  # fmt: skip
    resumed = await call(chat(), key=secret)
    assert (resumed.status, resumed.json()["choices"][0]["message"]["content"]) == (200, "Hello world")


async def test_a_chat_message_during_the_outage_is_an_error_frame_and_saves_nothing(
    alice: Any, stub: Any, database_outage: DatabaseOutage
) -> None:
    socket = await chat_socket(alice)
    database_outage.cut()
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "Hello?"})
    error = await socket.receive_json_from(timeout=10)
    assert (error["type"], error["code"]) == ("error", "database_unavailable")
    assert DOWN in error["message"]
    database_outage.restore()
    assert (await written())["conversations"] == 0
    assert await written() == {"conversations": 0, "messages": [], "open_reservations": 0, "reservations": [],
                               "active_answers": 0, "events": []}  # fmt: skip
    # The same socket works again once the database is back.
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "Hello?"})
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "complete"
    await socket.disconnect()


async def test_an_answer_that_ends_during_the_outage_is_settled_once_the_database_is_back(
    alice: Any, stub: Any, database_outage: DatabaseOutage
) -> None:
    stub.script = Script(pieces=[("", f"w{index} ") for index in range(10)], delay=0.05)
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "Hello?"})
    frames = await frames_until(socket, "delta")
    database_outage.cut()
    # The engine finishes while the database is down: the answer waits in memory, unsettled.
    await asyncio.to_thread(stub.finished.wait, 10)
    await asyncio.sleep(0.5)
    database_outage.restore()
    frames += await frames_until(socket, "done", timeout=15)
    assert frames[-1]["status"] == "complete"
    assert joined(frames, "content") == "".join(f"w{index} " for index in range(10)), frames
    assert await written() == {
        "conversations": 1,
        "messages": [("user", "complete"), ("assistant", "complete")],
        "open_reservations": 0,
        "reservations": ["complete"],
        "active_answers": 0,
        "events": ["complete"],
    }
    await socket.disconnect()


async def test_an_api_answer_that_ends_during_the_outage_is_settled_once_the_database_is_back(
    alice: Any, stub: Any, database_outage: DatabaseOutage
) -> None:
    stub.script = Script(pieces=[("", f"w{index} ") for index in range(10)], delay=0.05)
    secret = await database_sync_to_async(key_for)(alice)
    reply = asyncio.create_task(call(chat(stream=True), key=secret))
    await asyncio.to_thread(lambda: bool(stub.requests) or stub.finished.wait(10))
    database_outage.cut()
    await asyncio.to_thread(stub.finished.wait, 10)
    await asyncio.sleep(0.5)
    assert not reply.done(), "the answer ended before its usage was settled"
    database_outage.restore()
    events = (await reply).events()
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert (await written())["reservations"] == ["complete"]
    assert (await written())["open_reservations"] == 0
    assert (await written())["events"] == ["complete"]
