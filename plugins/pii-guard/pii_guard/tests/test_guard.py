"""pii-guard over the portal's chat socket, with the deterministic stub engine recording what it got.

The stub stands in for the model here because these tests are about what the portal sends
on; tests/test_pii_guard_engine.py checks what the real vLLM received.
"""

from __future__ import annotations

import json
import logging

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from portal.audit.models import Event
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    saved_counts,
    stub_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

NUMBER = "13812345678"


def send(content):
    return {"type": "chat.send", "conversation": None, "content": content, "params": {}}


@database_sync_to_async
def events(action):
    return [(event.actor_name, event.outcome, json.loads(event.data)) for event in Event.objects.filter(action=action)]


async def test_a_members_phone_number_is_masked_before_the_model_and_the_user_is_told(person, stub):
    alice = await database_sync_to_async(person)("alice")
    socket = await chat_socket(alice)
    await socket.send_json_to(send(f"Call me at {NUMBER} or mail alice@example.org"))
    frames = await frames_until(socket, "done")
    sent = stub.requests[-1]["messages"][-1]["content"]
    assert NUMBER not in sent
    assert sent == "Call me at [REDACTED:phone] or mail [REDACTED:email]"
    (notice,) = frames[0]["notices"]
    assert "1 e-mail address and 1 phone number" in notice
    assert frames[-1]["status"] == "complete"
    (event,) = await events("pii_guard.masked")
    assert event[0] == "alice"
    assert event[1] == "masked"
    assert event[2]["kinds"] == {"email": 1, "phone": 1}
    assert NUMBER not in json.dumps(event[2])
    question = await database_sync_to_async(Message.objects.filter(role="user").get)()
    assert NUMBER in question.content, "the user's own conversation keeps what they wrote"
    await socket.disconnect()


async def test_a_blocked_group_is_refused_with_the_reason_and_nothing_is_sent(person, stub, settings):
    settings.PORTAL_PLUGIN_SETTINGS = {"pii-guard": {"groups": {"Contractors": "block"}}}
    carl = await database_sync_to_async(person)("carl", "Members", "Contractors")
    socket = await chat_socket(carl)
    await socket.send_json_to(send(f"My number is {NUMBER}"))
    (error,) = await frames_until(socket, "error")
    assert error["code"] == "refused_by_plugin"
    assert error["plugin"] == "pii-guard"
    assert "1 phone number" in error["message"]
    assert stub.requests == []
    assert await saved_counts() == (0, 0)
    (event,) = await events("pii_guard.blocked")
    assert event[:2] == ("carl", "blocked")
    await socket.disconnect()


async def test_a_group_with_the_guard_off_sends_the_text_as_it_is(person, stub, settings):
    settings.PORTAL_PLUGIN_SETTINGS = {"pii-guard": {"groups": {"Admins": "off"}}}
    adam = await database_sync_to_async(person)("adam", "Admins")
    socket = await chat_socket(adam)
    await socket.send_json_to(send(f"My number is {NUMBER}"))
    frames = await frames_until(socket, "done")
    assert stub.requests[-1]["messages"][-1]["content"] == f"My number is {NUMBER}"
    assert frames[0]["notices"] == []
    assert await events("pii_guard.masked") == []
    await socket.disconnect()


async def test_only_the_configured_kinds_are_acted_on(person, stub, settings):
    settings.PORTAL_PLUGIN_SETTINGS = {"pii-guard": {"kinds": ["email"]}}
    alice = await database_sync_to_async(person)("alice")
    socket = await chat_socket(alice)
    await socket.send_json_to(send(f"{NUMBER} and alice@example.org"))
    await frames_until(socket, "done")
    assert stub.requests[-1]["messages"][-1]["content"] == f"{NUMBER} and [REDACTED:email]"
    await socket.disconnect()


async def test_earlier_questions_are_masked_again_on_the_next_turn(person, stub):
    alice = await database_sync_to_async(person)("alice")
    socket = await chat_socket(alice)
    await socket.send_json_to(send(f"Remember {NUMBER}"))
    first = await frames_until(socket, "done")
    await socket.send_json_to({**send("What was it?"), "conversation": first[-1]["conversation"]})
    await frames_until(socket, "done")
    history = stub.requests[-1]["messages"]
    assert all(NUMBER not in message["content"] for message in history)
    assert history[0]["content"] == "Remember [REDACTED:phone]"
    await socket.disconnect()


async def test_text_without_personal_data_passes_unchanged_and_unrecorded(person, stub):
    alice = await database_sync_to_async(person)("alice")
    socket = await chat_socket(alice)
    await socket.send_json_to(send("Order 2024-11-30 costs 12345 yuan"))
    frames = await frames_until(socket, "done")
    assert stub.requests[-1]["messages"][-1]["content"] == "Order 2024-11-30 costs 12345 yuan"
    assert frames[0]["notices"] == []
    assert await events("pii_guard.masked") == []
    await socket.disconnect()


async def test_a_broken_setting_refuses_the_request_instead_of_letting_data_through(person, stub, settings, caplog):
    settings.PORTAL_PLUGIN_SETTINGS = {"pii-guard": {"default": "maybe"}}
    alice = await database_sync_to_async(person)("alice")
    socket = await chat_socket(alice)
    with caplog.at_level(logging.ERROR, "portal.plugins"):
        await socket.send_json_to(send(f"My number is {NUMBER}"))
        (error,) = await frames_until(socket, "error")
    assert error["code"] == "plugin_failed"
    assert error["plugin"] == "pii-guard"
    assert stub.requests == []
    assert "before_generate hook of plugin pii-guard failed" in caplog.text
    await socket.disconnect()
