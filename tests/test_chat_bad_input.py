"""Every bad input on the chat socket gets an error frame with a code, and nothing is saved.

After each one the same socket is still usable: it answers the next frame.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Message
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    saved_counts,
    stub_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up", "stub")]


def send(content="Hello", conversation=None, **params):
    return json.dumps({"type": "chat.send", "conversation": conversation, "content": content, "params": params})


def edit(conversation, content):
    return json.dumps({"type": "chat.edit", "conversation": conversation, "content": content})


LONG = "x" * 101

BAD_FRAMES = {
    "not JSON": ("{type: chat.send", "bad_json"),
    "a JSON array": ("[1, 2]", "bad_json"),
    "a JSON string": ('"chat.send"', "bad_json"),
    "an unknown type": ('{"type": "chat.shout"}', "unknown_type"),
    "no type": ('{"content": "hi"}', "unknown_type"),
    "over-long content": (send(LONG), "content_too_long"),
    "empty content": (send(""), "empty_content"),
    "blank content": (send(" \n\t "), "empty_content"),
    "content that is not text": (json.dumps({"type": "chat.send", "content": 42}), "bad_request"),
    "missing content": ('{"type": "chat.send", "conversation": null}', "bad_request"),
    "negative max tokens": (send(max_tokens=-5), "invalid_params"),
    "zero max tokens": (send(max_tokens=0), "invalid_params"),
    "fractional max tokens": (send(max_tokens=10.5), "invalid_params"),
    "boolean max tokens": (send(max_tokens=True), "invalid_params"),
    "temperature above 2": (send(temperature=2.5), "invalid_params"),
    "negative temperature": (send(temperature=-0.1), "invalid_params"),
    "NaN temperature": ('{"type": "chat.send", "content": "hi", "params": {"temperature": NaN}}', "invalid_params"),
    "infinite top_p": ('{"type": "chat.send", "content": "hi", "params": {"top_p": Infinity}}', "invalid_params"),
    "temperature as text": (send(temperature="hot"), "invalid_params"),
    "top_p of zero": (send(top_p=0), "invalid_params"),
    "top_p above 1": (send(top_p=1.5), "invalid_params"),
    "an unknown reasoning effort": (send(reasoning_effort="extreme"), "invalid_params"),
    "an unknown parameter": (send(temprature=0.5), "invalid_params"),
    "params that are not an object": (
        json.dumps({"type": "chat.send", "content": "hi", "params": [1]}),
        "invalid_params",
    ),
    "an over-long system prompt": (send(system="s" * 51), "invalid_params"),
    "a model name that is not text": (send(model=7), "invalid_params"),
    "an unknown conversation id": (send(conversation=999_999), "not_found"),
    "a conversation id that is not a number": (send(conversation="1"), "not_found"),
    "regenerate without a conversation": ('{"type": "chat.regenerate"}', "not_found"),
    "attach to an unknown conversation": ('{"type": "chat.attach", "conversation": 999999}', "not_found"),
    "edit of an unknown conversation": (edit(999_999, "changed"), "not_found"),
    "stop of an unknown conversation": ('{"type": "chat.stop", "conversation": 999999}', "not_found"),
    "over-long content in an edit": (edit(999_999, LONG), "content_too_long"),
    "empty content in an edit": (edit(999_999, " "), "empty_content"),
    "a type that is a list": ('{"type": ["chat.send"], "content": "hi"}', "unknown_type"),
    "a type that is an object": ('{"type": {"chat": "send"}, "content": "hi"}', "unknown_type"),
    "a huge whole-number temperature": (send(temperature=int("9" * 400)), "invalid_params"),
    "a huge negative top_p": (send(top_p=-int("9" * 400)), "invalid_params"),
    "NaN max tokens": ('{"type": "chat.send", "content": "hi", "params": {"max_tokens": NaN}}', "invalid_params"),
    "content with a lone surrogate": (send("hi \ud800"), "bad_request"),
    "content with a NUL character": (send("hi \x00"), "bad_request"),
    "a system prompt with a lone surrogate": (send(system="\udfff"), "invalid_params"),
    "a model name with a lone surrogate": (send(model="stub\ud800"), "invalid_params"),
    "a frame over the size limit": (json.dumps({"type": "chat.attach", "padding": "x" * 70_000}), "content_too_long"),
}


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    settings.CHAT_MAX_SYSTEM_PROMPT_CHARS = 50


@pytest.mark.parametrize(("frame", "code"), list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_usable(alice, frame, code):
    socket = await chat_socket(alice)
    before = await saved_counts()
    await socket.send_to(text_data=frame)
    error = await socket.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["message"]
    assert await saved_counts() == before
    await socket.send_json_to({"type": "chat.attach", "conversation": None})
    assert (await socket.receive_json_from(timeout=5))["type"] == "attached"
    await socket.disconnect()


async def test_a_binary_frame_gets_an_error_frame(alice):
    socket = await chat_socket(alice)
    await socket.send_to(bytes_data=b"\x00\x01")
    error = await socket.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "bad_json")
    await socket.disconnect()


async def test_the_invalid_parameter_is_named(alice):
    socket = await chat_socket(alice)
    await socket.send_to(text_data=send(temperature=9))
    error = await socket.receive_json_from(timeout=5)
    assert error["field"] == "temperature"
    await socket.disconnect()


async def test_content_at_the_limit_is_accepted(alice):
    socket = await chat_socket(alice)
    await socket.send_to(text_data=send("y" * 100))
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "complete"
    await socket.disconnect()


@database_sync_to_async
def alices_conversation(alice, bob):
    conversation = Conversation.objects.create(owner=alice, title="Alice's secrets")
    Message.objects.create(conversation=conversation, role="user", content="my secret")
    Message.objects.create(conversation=conversation, role="assistant", content="kept")
    return conversation.pk


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "chat.send", "content": "mine now"},
        {"type": "chat.regenerate"},
        {"type": "chat.edit", "content": "changed"},
        {"type": "chat.attach"},
        {"type": "chat.stop"},
    ],
    ids=["send", "regenerate", "edit", "attach", "stop"],
)
async def test_bob_cannot_touch_alices_conversation(alice, bob, frame):
    conversation_id = await alices_conversation(alice, bob)
    socket = await chat_socket(bob)
    before = await saved_counts()
    await socket.send_json_to({**frame, "conversation": conversation_id})
    error = await socket.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "not_found")
    assert "secret" not in json.dumps(error)
    assert await saved_counts() == before
    contents = await database_sync_to_async(list)(Message.objects.values_list("content", flat=True).order_by("pk"))
    assert contents == ["my secret", "kept"]
    await socket.disconnect()


@pytest.mark.parametrize("title", ["bad \ud800 title", "nul \x00 title"], ids=["lone surrogate", "NUL"])
async def test_a_title_that_cannot_be_stored_is_a_400_and_nothing_changes(alice, client_for, title):
    conversation_id = await alices_conversation(alice, None)
    client = await database_sync_to_async(client_for)(alice)
    url = f"/chat/api/conversations/{conversation_id}/rename/"
    response = await database_sync_to_async(client.post)(url, json.dumps({"title": title}), "application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=conversation_id)
    assert conversation.title == "Alice's secrets"
