"""An open WebSocket ends with the sign-in it was opened with: logout, a password change,
deactivation, session expiry, and a role change (hardening issue, item 3).

Each trigger closes the socket within a second: 4401 when the session no longer signs the
user in, 4403 when the user is still signed in but no longer allowed on that socket.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from accounts.roles import MEMBERS
from tests.chat_socket import loop_cleaned_up  # noqa: F401 - fixture
from tests.conftest import PASSWORD
from tests.websocket import open_socket, signed_in_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

WITHIN = 1.0  # seconds: the bound the hardening issue sets
NEW_PASSWORD = "a new and long passphrase"


async def socket_of(client: Client, path: str = "/ws/chat/") -> WebsocketCommunicator:
    communicator, connected, code = await open_socket(path, client=client)
    assert connected, f"refused with {code}"
    if path == "/ws/status/":
        await communicator.receive_json_from(timeout=5)  # the first push of the engines
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> Any:
    output = await communicator.receive_output(timeout=WITHIN)
    assert output["type"] == "websocket.close", output
    return output["code"]


async def still_answers(communicator: WebsocketCommunicator) -> None:
    """The socket is open and reads frames: an unknown frame type gets its error frame back."""
    await communicator.send_to(text_data=json.dumps({"type": "still.there"}))
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["code"] == "unknown_type", frame


async def test_logging_out_closes_the_sockets_of_that_session_at_once(alice):
    browser = await signed_in_client(alice)
    chat, status = await socket_of(browser), await socket_of(browser, "/ws/status/")
    response = await database_sync_to_async(browser.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await closed_with(chat) == 4401
    assert await closed_with(status) == 4401
    # The status socket stopped polling the database when it closed, not when the browser goes.
    await asyncio.sleep(0)
    assert [task for task in asyncio.all_tasks() if "StatusConsumer._poll" in repr(task.get_coro())] == []


async def test_logging_out_in_one_browser_leaves_the_other_browsers_socket_open(alice):
    laptop, phone = await signed_in_client(alice), await signed_in_client(alice)
    on_laptop, on_phone = await socket_of(laptop), await socket_of(phone)
    await database_sync_to_async(laptop.post)("/accounts/logout/")
    assert await closed_with(on_laptop) == 4401
    # The phone's socket got the same broadcast, checked its own session and stayed.
    await still_answers(on_phone)
    assert await on_phone.receive_nothing(timeout=0.3)
    await on_phone.disconnect()


async def test_a_password_change_closes_every_socket_of_the_user(alice, bob):
    laptop, phone = await signed_in_client(alice), await signed_in_client(alice)
    on_laptop, on_phone = await socket_of(laptop), await socket_of(phone, "/ws/status/")
    bobs = await socket_of(await signed_in_client(bob))

    def change_password() -> None:
        alice.set_password(NEW_PASSWORD)
        alice.save()

    await database_sync_to_async(change_password)()
    assert await closed_with(on_laptop) == 4401
    assert await closed_with(on_phone) == 4401
    await still_answers(bobs)
    await bobs.disconnect()


async def test_a_password_change_through_the_account_page_closes_the_other_browsers_socket(alice):
    laptop, phone = await signed_in_client(alice), await signed_in_client(alice)
    on_phone = await socket_of(phone)
    response = await database_sync_to_async(laptop.post)(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content[:2000]
    assert await closed_with(on_phone) == 4401


async def test_deactivation_closes_the_socket_at_once(alice):
    chat = await socket_of(await signed_in_client(alice))
    alice.is_active = False
    await database_sync_to_async(alice.save)(update_fields=["is_active"])
    assert await closed_with(chat) == 4401


async def test_losing_the_members_role_closes_the_chat_socket_with_4403(alice):
    browser = await signed_in_client(alice)
    chat, status = await socket_of(browser), await socket_of(browser, "/ws/status/")
    members = await database_sync_to_async(Group.objects.get)(name=MEMBERS)
    await database_sync_to_async(alice.groups.remove)(members)
    assert await closed_with(chat) == 4403
    # The status socket is open to every signed-in user: the same change leaves it open.
    await still_answers(status)
    await status.disconnect()


async def test_a_role_taken_away_from_the_groups_side_closes_the_socket_too(alice, bob):
    alices, bobs = await socket_of(await signed_in_client(alice)), await socket_of(await signed_in_client(bob))
    members = await database_sync_to_async(Group.objects.get)(name=MEMBERS)
    await database_sync_to_async(members.user_set.remove)(alice)
    assert await closed_with(alices) == 4403
    await database_sync_to_async(members.user_set.clear)()
    assert await closed_with(bobs) == 4403


async def test_a_frame_after_the_session_expired_is_refused(alice):
    chat = await socket_of(await signed_in_client(alice))
    await database_sync_to_async(Session.objects.update)(expire_date=timezone.now() - timedelta(seconds=1))
    await chat.send_to(text_data=json.dumps({"type": "chat.attach", "conversation": None}))
    # Closed instead of answered: no "attached" frame comes first.
    assert await closed_with(chat) == 4401


async def test_a_frame_after_the_session_was_deleted_is_refused(alice):
    status = await socket_of(await signed_in_client(alice), "/ws/status/")
    await database_sync_to_async(Session.objects.all().delete)()
    await status.send_to(text_data=json.dumps({"type": "still.there"}))
    assert await closed_with(status) == 4401


async def test_a_frame_while_signed_in_is_answered(alice):
    chat = await socket_of(await signed_in_client(alice))
    await chat.send_to(text_data=json.dumps({"type": "chat.attach", "conversation": None}))
    assert (await chat.receive_json_from(timeout=5))["type"] == "attached"
    await chat.disconnect()
