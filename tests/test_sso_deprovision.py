"""A deactivated account is cut off at once: its sessions are deleted and its sockets closed."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session

from tests.websocket import open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]


def sessions_of(user: Any) -> int:
    return sum(1 for session in Session.objects.all() if session.get_decoded().get("_auth_user_id") == str(user.pk))


def test_deactivating_deletes_only_that_users_sessions(alice: Any, bob: Any, client_for: Any) -> None:
    client_for(alice), client_for(alice), client_for(bob)
    assert (sessions_of(alice), sessions_of(bob)) == (2, 1)
    alice.is_active = False
    alice.save()
    assert (sessions_of(alice), sessions_of(bob)) == (0, 1)


def test_saving_an_active_user_keeps_the_sessions(alice: Any, client_for: Any) -> None:
    client_for(alice)
    alice.first_name = "Alice"
    alice.save()
    assert sessions_of(alice) == 1


async def test_deactivating_closes_the_open_socket_at_once(alice: Any) -> None:
    communicator, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    await communicator.receive_json_from(timeout=5)  # the first status push
    alice.is_active = False
    await database_sync_to_async(alice.save)(update_fields=["is_active"])
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
