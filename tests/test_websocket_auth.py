"""WebSocket connections need a logged-in user and a same-site Origin."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from tests.websocket import open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_an_anonymous_socket_is_refused():
    communicator, connected, code = await open_socket("/ws/status/")
    assert not connected
    assert code == 4401
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused(alice):
    communicator, connected, _ = await open_socket("/ws/status/", alice, origin=b"https://evil.example")
    assert not connected
    await communicator.disconnect()


async def test_alice_connects_and_gets_the_engine_states(alice):
    communicator, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    message = await communicator.receive_json_from(timeout=5)
    assert message["type"] == "engines"
    assert isinstance(message["engines"], list)
    await communicator.disconnect()


async def test_alice_gets_the_engines_and_the_model_choices_in_one_push(alice):
    from tests.chat_stub_engine import register

    await database_sync_to_async(register)("http://127.0.0.1:9")
    communicator, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    message = await communicator.receive_json_from(timeout=5)
    assert [engine["name"] for engine in message["engines"]] == ["stub"]
    assert message["models"] == [
        {
            "model": "stub-model",
            "engine": "stub",
            "state": "ready",
            "progress": None,
            "message": "ready",
            "reasoning": True,
        }
    ]
    await communicator.disconnect()


async def test_a_disabled_users_socket_is_closed_on_the_next_change(alice, monkeypatch):
    from inference import consumers
    from inference.models import EngineConfig

    monkeypatch.setattr(consumers, "POLL_SECONDS", 0.1)
    communicator, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    await communicator.receive_json_from(timeout=5)
    alice.is_active = False
    await database_sync_to_async(alice.save)(update_fields=["is_active"])
    await database_sync_to_async(EngineConfig.objects.create)(
        name="new", served_model_name="new-model", model="/models/new"
    )
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    assert output["code"] == 4401
    await communicator.disconnect()
