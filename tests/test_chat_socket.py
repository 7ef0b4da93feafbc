"""The chat socket: streaming, stop, re-attach, ownership and the engine's state.

The upstream is the deterministic stub (tests/chat_stub_engine.py): these tests are about
what the portal does with a stream, not about the model. tests/test_chat_engine.py uses the
real engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import conversations
from chat.models import Conversation, Message
from inference.models import EngineConfig, EngineState
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
    saved_counts,
    settled,
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script
from tests.websocket import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


def send(content="What is the capital of France?", conversation=None, **params):
    return {"type": "chat.send", "conversation": conversation, "content": content, "params": params}


async def test_alice_sees_the_answer_stream_in_with_reasoning_apart(alice, stub):
    stub.script = Script(pieces=[("Think", ""), (" hard.", ""), ("", "Paris"), ("", " it is.")])
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    frames = await frames_until(socket, "done")
    start, done = frames[0], frames[-1]
    assert start["type"] == "start"
    assert start["created"] is True
    assert start["title"] == "What is the capital of France?"
    assert joined(frames, "content") == "Paris it is."
    assert joined(frames, "reasoning") == "Think hard."
    assert done["status"] == "complete"
    assert done["usage"]["completion_tokens"] == 4
    assert done["usage"]["prompt_tokens"] == 11
    assert done["ttft_ms"] is not None
    answer = await database_sync_to_async(Message.objects.get)(pk=start["answer"])
    assert (answer.content, answer.reasoning, answer.status) == ("Paris it is.", "Think hard.", "complete")
    assert answer.completion_tokens == 4
    await socket.disconnect()


async def test_the_first_token_goes_out_at_once_and_later_ones_are_coalesced(alice, stub, settings):
    settings.GENERATION_FRAMES_PER_SECOND = 10
    stub.script = Script(pieces=[("", f"w{index} ") for index in range(60)], delay=0.01)
    socket = await chat_socket(alice)
    began = time.monotonic()
    await socket.send_json_to(send())
    frames = await frames_until(socket, "done")
    elapsed = time.monotonic() - began
    deltas = [frame for frame in frames if frame["type"] == "delta"]
    assert deltas[0]["content"] == "w0 "
    assert joined(frames, "content") == "".join(f"w{index} " for index in range(60))
    # At most one frame per 1/10 s after the first, however many pieces arrived.
    assert len(deltas) <= elapsed * 10 + 2
    assert len(deltas) < 30
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1))
    await socket.disconnect()


async def test_earlier_answers_go_back_to_the_model_without_their_reasoning(alice, stub):
    stub.script = Script(pieces=[("secret musing", ""), ("", "Paris.")])
    socket = await chat_socket(alice)
    await socket.send_json_to(send(system="Be brief."))
    first = await frames_until(socket, "done")
    await socket.send_json_to(send("And of Italy?", conversation=first[0]["conversation"]))
    await frames_until(socket, "done")
    sent = stub.requests[1]["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    assert "secret musing" not in str(stub.requests[1])
    await socket.disconnect()


async def test_parameters_are_sent_stored_and_max_tokens_is_clamped_to_the_limit(alice, stub, settings):
    settings.GENERATION_MAX_TOKENS_LIMIT = 500
    socket = await chat_socket(alice)
    await socket.send_json_to(
        send(temperature=0.3, top_p=0.9, max_tokens=100_000, reasoning_effort="high", model="stub-model")
    )
    frames = await frames_until(socket, "done")
    body = stub.requests[0]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.9, 500)
    assert body["reasoning_effort"] == "high"
    assert body["stream_options"] == {"include_usage": True}
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=frames[0]["conversation"])
    assert conversation.settings_dict() == {
        "model": "stub-model",
        "system": "",
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 500,
        "reasoning_effort": "high",
    }
    await socket.disconnect()


async def test_stop_closes_the_upstream_stream_and_keeps_the_partial_answer(alice, stub):
    stub.script = Script(pieces=[("", f"word{index} ") for index in range(400)], delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    await frames_until(socket, "delta")
    await socket.send_json_to({"type": "chat.stop"})
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "stopped"
    assert frames[-1]["error"] is None
    assert await asyncio.to_thread(stub.closed_early.wait, 5), "the upstream stream was not closed"
    answer = await settled(start["answer"])
    assert answer.status == "stopped"
    assert answer.content.startswith("word0 ")
    assert len(answer.content) < len("".join(f"word{index} " for index in range(400)))
    assert not stub.finished.is_set()
    await socket.disconnect()


async def test_stop_by_conversation_id_works_from_another_socket(alice, stub):
    stub.script = Script(pieces=[("", "x")] * 400, delay=0.02)
    first = await chat_socket(alice)
    await first.send_json_to(send())
    start = await first.receive_json_from(timeout=10)
    second = await chat_socket(alice)
    await second.send_json_to({"type": "chat.stop", "conversation": start["conversation"]})
    frames = await frames_until(first, "done")
    assert frames[-1]["status"] == "stopped"
    await first.disconnect()
    await second.disconnect()


async def test_stop_with_nothing_running_is_an_error_frame(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.stop"})
    frame = await socket.receive_json_from(timeout=5)
    assert (frame["type"], frame["code"]) == ("error", "not_generating")
    await socket.disconnect()


async def test_an_engine_dying_mid_answer_keeps_the_partial_answer_as_interrupted(alice, stub):
    stub.script = Script(pieces=[("", "one "), ("", "two "), ("", "three "), ("", "four")], crash_after=3)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    frames = await frames_until(socket, "done")
    error = next(frame for frame in frames if frame["type"] == "error")
    assert error["code"] == "engine_disconnected"
    assert frames[-1]["status"] == "interrupted"
    answer = await settled(frames[0]["answer"])
    assert (answer.status, answer.content, answer.error_code) == (
        "interrupted",
        "one two three ",
        "engine_disconnected",
    )
    await socket.disconnect()


async def test_a_second_question_while_one_is_answered_is_refused_as_busy(alice, stub):
    stub.script = Script(pieces=[("", "x")] * 100, delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    before = await saved_counts()
    await socket.send_json_to(send("Another", conversation=start["conversation"]))
    frames = await frames_until(socket, "error")
    assert frames[-1]["code"] == "busy"
    assert await saved_counts() == before
    await socket.send_json_to({"type": "chat.stop"})
    await frames_until(socket, "done")
    await socket.disconnect()


async def test_a_reload_reattaches_and_the_answer_continues(alice, stub):
    pieces = [("", f"p{index} ") for index in range(60)]
    stub.script = Script(pieces=[("thinking ", ""), *pieces], delay=0.03)
    first = await chat_socket(alice)
    await first.send_json_to(send())
    start = await first.receive_json_from(timeout=10)
    await frames_until(first, "delta")
    await first.disconnect()  # the page is reloaded
    await asyncio.sleep(0.2)
    second = await chat_socket(alice)
    await second.send_json_to({"type": "chat.attach", "conversation": start["conversation"]})
    attached = await second.receive_json_from(timeout=5)
    assert attached == {"type": "attached", "conversation": start["conversation"], "answer": start["answer"]}
    resumed = await second.receive_json_from(timeout=5)
    assert resumed["type"] == "start"
    assert resumed["resumed"] is True
    assert resumed["reasoning"] == "thinking "
    frames = await frames_until(second, "done")
    assert frames[-1]["status"] == "complete"
    assert resumed["content"] + joined(frames, "content") == "".join(content for _, content in pieces)
    await second.disconnect()


async def test_with_nobody_attached_after_the_grace_period_the_answer_is_stopped_and_kept(alice, stub, settings):
    settings.CHAT_GRACE_SECONDS = 0.3
    stub.script = Script(pieces=[("", "x ")] * 500, delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    await frames_until(socket, "delta")
    await socket.disconnect()
    answer = await settled(start["answer"])
    assert answer.status == "interrupted"
    assert answer.error_code == "detached"
    assert answer.content.startswith("x ")
    assert await asyncio.to_thread(stub.closed_early.wait, 5)


@database_sync_to_async
def streaming_without_a_process(owner, heartbeat_age):
    """A conversation whose answer is "streaming" but which no process here is writing."""
    conversation = Conversation.objects.create(owner=owner, title="orphan")
    Message.objects.create(conversation=conversation, role="user", content="hi")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )
    return conversation.pk, answer.pk


async def test_an_answer_whose_process_is_gone_is_marked_lost_on_attach(alice, settings):
    settings.CHAT_ATTACH_TIMEOUT = 0.5
    conversation_id, answer_id = await streaming_without_a_process(alice, conversations.LOST_AFTER_SECONDS + 1)
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.attach", "conversation": conversation_id})
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "interrupted"
    assert frames[-1]["error"]["code"] == "lost"
    answer = await database_sync_to_async(Message.objects.get)(pk=answer_id)
    assert answer.status == "interrupted"
    await socket.disconnect()


async def test_attaching_to_a_conversation_with_nothing_running_says_so(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = (await frames_until(socket, "done"))[0]
    await socket.send_json_to({"type": "chat.attach", "conversation": start["conversation"]})
    frame = await socket.receive_json_from(timeout=5)
    assert frame == {"type": "attached", "conversation": start["conversation"], "answer": None}
    await socket.disconnect()


async def test_regenerate_replaces_the_last_answer(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    first = await frames_until(socket, "done")
    stub.script = Script(pieces=[("", "Again.")])
    await socket.send_json_to({"type": "chat.regenerate", "conversation": first[0]["conversation"]})
    second = await frames_until(socket, "done")
    assert joined(second, "content") == "Again."
    messages = await database_sync_to_async(list)(
        Message.objects.filter(conversation_id=first[0]["conversation"]).values_list("role", "content")
    )
    assert messages == [("user", "What is the capital of France?"), ("assistant", "Again.")]
    assert stub.requests[1]["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    await socket.disconnect()


async def test_edit_replaces_the_last_question_and_its_answer(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    first = await frames_until(socket, "done")
    await socket.send_json_to({"type": "chat.edit", "conversation": first[0]["conversation"], "content": "And Spain?"})
    second = await frames_until(socket, "done")
    assert second[0]["question"]["content"] == "And Spain?"
    messages = await database_sync_to_async(list)(
        Message.objects.filter(conversation_id=first[0]["conversation"]).values_list("role", "content")
    )
    assert messages == [("user", "And Spain?"), ("assistant", "Hello world")]
    await socket.disconnect()


async def test_engine_not_ready_gets_a_frame_with_its_state_and_nothing_is_saved(alice):
    @database_sync_to_async
    def loading_engine():
        config = EngineConfig.objects.create(
            name="big", served_model_name="big-model", model="/models/big", desired_state="running"
        )
        from datetime import timedelta

        from django.utils import timezone

        EngineState.objects.create(
            engine=config, state="loading", progress=0.45, heartbeat_at=timezone.now() + timedelta(days=1)
        )

    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    none = await socket.receive_json_from(timeout=5)
    assert (none["type"], none["code"], none["state"]) == ("error", "engine_unavailable", "none")
    await loading_engine()
    await socket.send_json_to(send())
    loading = await socket.receive_json_from(timeout=5)
    assert (loading["code"], loading["state"], loading["progress"]) == ("engine_unavailable", "loading", 0.45)
    assert "45%" in loading["message"]
    assert await saved_counts() == (0, 0)
    await socket.disconnect()


async def test_auditors_and_anonymous_users_cannot_open_the_chat_socket(audrey):
    communicator, connected, code = await open_socket("/ws/chat/", audrey)
    assert (connected, code) == (False, 4403)
    await communicator.disconnect()
    communicator, connected, code = await open_socket("/ws/chat/")
    assert (connected, code) == (False, 4401)
    await communicator.disconnect()


async def test_a_disabled_user_is_cut_off_on_the_next_message(alice, stub):
    socket = await chat_socket(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)(update_fields=["is_active"])
    await socket.send_json_to(send())
    output = await socket.receive_output(timeout=5)
    assert (output["type"], output["code"]) == ("websocket.close", 4401)
    assert await saved_counts() == (0, 0)
    await socket.disconnect()


async def test_deleting_a_conversation_stops_its_answer(alice, stub, client_for):
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    await frames_until(socket, "delta")
    client = await database_sync_to_async(client_for)(alice)
    response = await database_sync_to_async(client.post)(f"/chat/api/conversations/{start['conversation']}/delete/")
    assert response.status_code == 200
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "stopped"
    assert await asyncio.to_thread(stub.closed_early.wait, 5)
    assert await saved_counts() == (0, 0)
    await socket.disconnect()


async def test_an_answer_whose_process_is_slow_to_answer_is_not_given_up_while_its_heartbeat_is_fresh(
    alice, stub, settings
):
    settings.CHAT_ATTACH_TIMEOUT = 0.5
    conversation_id, answer_id = await streaming_without_a_process(alice, 0)
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.attach", "conversation": conversation_id})
    assert (await socket.receive_json_from(timeout=5))["answer"] == answer_id
    # Several probes time out, but the answer's process is alive: nothing is settled ...
    assert await socket.receive_nothing(timeout=1.6)
    answer = await database_sync_to_async(Message.objects.get)(pk=answer_id)
    assert answer.status == "streaming"
    # ... and the conversation stays busy, so no second answer runs next to it.
    before = await saved_counts()
    await socket.send_json_to(send("Another", conversation=conversation_id))
    assert (await socket.receive_json_from(timeout=5))["code"] == "busy"
    assert await saved_counts() == before
    # Once the heartbeat stops, the next probe settles the answer as lost.
    old = timezone.now() - timedelta(seconds=conversations.LOST_AFTER_SECONDS + 1)
    await database_sync_to_async(Message.objects.filter(pk=answer_id).update)(heartbeat_at=old)
    done = (await frames_until(socket, "done", timeout=5))[-1]
    assert (done["answer"], done["status"], done["error"]["code"]) == (answer_id, "interrupted", "lost")
    await socket.disconnect()


async def test_an_answer_whose_process_died_no_longer_keeps_its_conversation_busy(alice, stub):
    conversation_id, orphan_id = await streaming_without_a_process(alice, conversations.LOST_AFTER_SECONDS + 1)
    socket = await chat_socket(alice)
    await socket.send_json_to(send("Still there?", conversation=conversation_id))
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "complete"
    orphan = await database_sync_to_async(Message.objects.get)(pk=orphan_id)
    assert (orphan.status, orphan.error_code) == ("interrupted", "lost")
    await socket.disconnect()


async def test_a_running_answer_keeps_its_heartbeat_fresh(alice, stub, monkeypatch):
    monkeypatch.setattr(conversations, "HEARTBEAT_SECONDS", 0.05)
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    long_ago = timezone.now() - timedelta(days=1)
    await database_sync_to_async(Message.objects.filter(pk=start["answer"]).update)(heartbeat_at=long_ago)
    await asyncio.sleep(0.5)
    answer = await database_sync_to_async(Message.objects.get)(pk=start["answer"])
    assert answer.heartbeat_at is not None
    assert timezone.now() - answer.heartbeat_at < timedelta(seconds=5)
    await socket.send_json_to({"type": "chat.stop"})
    await frames_until(socket, "done")
    await socket.disconnect()


async def test_a_live_answer_is_not_taken_for_lost_while_the_database_thread_is_busy(alice, stub, monkeypatch):
    # A burst of new answers keeps the one thread that every socket's database work shares
    # busy for longer than LOST_AFTER_SECONDS (a thousand at once did, bench/relay.py); here
    # one long call plays the burst. The answers' heartbeat must not wait behind it.
    monkeypatch.setattr(conversations, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(conversations, "LOST_AFTER_SECONDS", 0.5)
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.01)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await socket.receive_json_from(timeout=10)
    busy = asyncio.ensure_future(database_sync_to_async(time.sleep)(1.5))
    await asyncio.sleep(1.0)  # the answer is twice LOST_AFTER_SECONDS old, the thread still busy
    # Another process (here: another thread) looks whether the answer's process is alive.
    still = await sync_to_async(conversations.settled_or_lost, thread_sensitive=False)(start["answer"])
    assert still is None, f"a live answer was taken for lost: {still and (still.status, still.error_code)}"
    await busy
    await socket.send_json_to({"type": "chat.stop"})
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "stopped"
    await socket.disconnect()


async def test_an_unexpected_failure_gets_an_internal_error_frame_and_the_socket_stays_usable(
    alice, stub, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(conversations, "begin_turn", broken)
    socket = await chat_socket(alice)
    with caplog.at_level(logging.ERROR, logger="portal.consumers"):
        await socket.send_json_to(send())
        error = await socket.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "internal_error")
    assert "a bug" not in error["message"]
    assert any(record.exc_info for record in caplog.records)
    await socket.send_json_to({"type": "chat.attach", "conversation": None})
    assert (await socket.receive_json_from(timeout=5))["type"] == "attached"
    await socket.disconnect()
