"""Quotas through the chat socket: refusals with the reset time, model access, slots, priority, the sweep.

The upstream is the deterministic stub (tests/chat_stub_engine.py, which also answers
``/tokenize``): these tests are about what the portal admits and counts, not the model.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from accounts.models import DailyUsage, GroupPolicy, Policy, Reservation, UsageCounter
from accounts.roles import MEMBERS
from chat import conversations
from chat.models import Message
from inference.models import EngineConfig
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import MODEL, Script
from tests.test_metrics import scrape, token, value  # noqa: F401 - token is a fixture
from tests.websocket import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


def send(content: str = "What is the capital of France?", **params: Any) -> dict[str, Any]:
    return {"type": "chat.send", "conversation": None, "content": content, "params": params}


@database_sync_to_async
def give_members(**limits: Any) -> Policy:
    policy = Policy.objects.create(name="members", **limits)
    GroupPolicy.objects.create(group=Group.objects.get(name=MEMBERS), policy=policy)
    return policy


@database_sync_to_async
def usage_of(user: Any) -> UsageCounter:
    return UsageCounter.objects.get(user=user)


async def test_the_done_frame_carries_what_is_left_and_the_ledger_counts_the_answer(alice, stub):
    await give_members(tokens_per_day=2000)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    done = (await frames_until(socket, "done"))[-1]
    # The stub says 11 prompt tokens and one token per piece (two pieces).
    assert done["remaining"]["tokens_today"] == 2000 - 13
    assert done["remaining"]["requests_today"] is None
    counter = await usage_of(alice)
    assert (counter.day_tokens, counter.held_tokens, counter.active_answers) == (13, 0, 0)
    rows = await database_sync_to_async(list)(DailyUsage.objects.filter(user=alice).values_list("channel", "model"))
    assert rows == [("chat", MODEL)]
    # The prompt was counted by the engine's /tokenize, with the chat template's messages.
    assert stub.tokenized[-1]["messages"][-1]["content"] == "What is the capital of France?"
    await socket.disconnect()


@pytest.mark.usefixtures("token")
async def test_a_member_over_budget_is_refused_with_the_limit_and_the_reset_time(alice, stub):
    await give_members(tokens_per_day=20)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    await frames_until(socket, "done")
    before = await database_sync_to_async(scrape)()
    await socket.send_json_to(send("And of Spain?"))
    error = await socket.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "quota_exceeded"
    assert error["limit"] == {"name": "tokens_per_day", "value": 20}
    assert error["resets_at"].endswith("+00:00")
    assert error["retry_after"] > 0
    assert "daily budget of 20 tokens is used up" in error["message"]
    assert await database_sync_to_async(Message.objects.count)() == 2  # the refused question is not saved
    after = await database_sync_to_async(scrape)()
    counted = {"reason": "quota_exceeded", "channel": "chat"}
    assert value(after, "portal_refusals_total", **counted) - value(before, "portal_refusals_total", **counted) == 1
    await socket.disconnect()


async def test_a_model_outside_the_policy_is_refused_even_when_sent_by_hand(alice, stub):
    await database_sync_to_async(EngineConfig.objects.create)(
        name="other", served_model_name="other-model", model="/models/other"
    )
    await give_members(all_models=False, model_names=["other-model"])
    socket = await chat_socket(alice)
    await socket.send_json_to(send(model=MODEL))
    error = await socket.receive_json_from(timeout=5)
    assert (error["code"], error["allowed"]) == ("model_not_allowed", ["other-model"])
    assert stub.requests == []
    await socket.disconnect()


def test_the_model_picker_lists_only_the_allowed_models(alice, stub, client_for):
    EngineConfig.objects.create(name="other", served_model_name="other-model", model="/models/other")
    policy = Policy.objects.create(name="members", all_models=False, model_names=["other-model"])
    GroupPolicy.objects.create(group=Group.objects.get(name=MEMBERS), policy=policy)
    page = client_for(alice).get(reverse("chat:index"))
    assert [entry["model"] for entry in page.context["chat_config"]["models"]] == ["other-model"]


async def test_the_status_push_lists_only_the_allowed_models(alice, stub):
    await database_sync_to_async(EngineConfig.objects.create)(
        name="other", served_model_name="other-model", model="/models/other"
    )
    await give_members(all_models=False, model_names=["other-model"])
    socket, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    pushed = await socket.receive_json_from(timeout=5)
    assert [entry["model"] for entry in pushed["models"]] == ["other-model"]
    await socket.disconnect()


async def test_the_answer_after_the_concurrency_cap_is_refused_while_the_others_run(alice, stub):
    await give_members(concurrent_answers=2)
    stub.script = Script(pieces=[("", "x ")] * 200, delay=0.02)
    sockets = [await chat_socket(alice) for _ in range(3)]
    for socket in sockets[:2]:
        await socket.send_json_to(send())
        await frames_until(socket, "start")
    await sockets[2].send_json_to(send())
    error = await sockets[2].receive_json_from(timeout=5)
    assert error["code"] == "too_many_answers"
    assert error["limit"] == {"name": "concurrent_answers", "value": 2}
    for socket in sockets[:2]:
        await socket.send_json_to({"type": "chat.stop"})
        await frames_until(socket, "done")
    await sockets[2].send_json_to(send())
    assert (await frames_until(sockets[2], "start"))[-1]["type"] == "start"
    await sockets[2].send_json_to({"type": "chat.stop"})
    await frames_until(sockets[2], "done")
    for socket in sockets:
        await socket.disconnect()


async def test_priority_is_sent_only_to_an_engine_with_priority_scheduling(alice, stub):
    await give_members(priority=7)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    await frames_until(socket, "done")
    assert "priority" not in stub.requests[-1]
    await database_sync_to_async(EngineConfig.objects.update)(scheduling_policy="priority")
    await socket.send_json_to(send())
    await frames_until(socket, "done")
    assert stub.requests[-1]["priority"] == 7
    await socket.disconnect()


async def test_when_the_engine_cannot_count_the_prompt_the_upper_bound_is_reserved(alice, stub):
    await give_members(max_prompt_tokens=40)
    stub.tokenize_fails = True
    socket = await chat_socket(alice)
    # 28 bytes of text: counted exactly (10 tokens here) it fits; its bound (28 + 16 + 64) does not.
    await socket.send_json_to(send("What is the capital of Peru?"))
    error = await socket.receive_json_from(timeout=5)
    assert error["code"] == "quota_exceeded"
    assert error["limit"] == {"name": "max_prompt_tokens", "value": 40}
    stub.tokenize_fails = False
    await socket.send_json_to(send("What is the capital of Peru?"))
    assert (await frames_until(socket, "done"))[-1]["status"] == "complete"
    await socket.disconnect()


async def test_an_answer_whose_process_died_gives_its_reservation_back_when_swept(alice, stub):
    await give_members(concurrent_answers=1)
    # The process that started this answer died before writing any of it: nothing settles it.
    turn = await database_sync_to_async(conversations.begin_turn)(alice, "send", None, "Hello?", None)
    counter = await usage_of(alice)
    assert (counter.active_answers, counter.held_tokens > 0) == (1, True)
    long_ago = timezone.now() - timedelta(seconds=conversations.LOST_AFTER_SECONDS + 5)
    await database_sync_to_async(Message.objects.filter(pk=turn.answer.pk).update)(heartbeat_at=long_ago)
    # The sweep runs when the user starts the next answer, in any conversation.
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    done = (await frames_until(socket, "done"))[-1]
    assert done["status"] == "complete"
    reservation = await database_sync_to_async(Reservation.objects.get)(request_id=turn.prepared.request.request_id)
    assert reservation.outcome == "lost"
    assert await database_sync_to_async(Reservation.objects.filter(settled_at__isnull=True).count)() == 0
    counter = await usage_of(alice)
    assert (counter.active_answers, counter.held_tokens) == (0, 0)
    await socket.disconnect()


async def test_every_ending_settles_the_reservation_once(alice, stub):
    await give_members(tokens_per_day=100_000)
    stub.script = Script(pieces=[("", "x ")] * 100, delay=0.02)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    start = await frames_until(socket, "delta")
    await socket.send_json_to({"type": "chat.stop"})
    await frames_until(socket, "done")
    answer = await settled(start[0]["answer"])
    assert answer.status == "stopped"
    stub.script = Script(pieces=[("", "one "), ("", "two ")] * 5, crash_after=3)
    await socket.send_json_to(send())
    assert (await frames_until(socket, "done"))[-1]["status"] == "interrupted"
    await asyncio.sleep(0)
    outcomes = await database_sync_to_async(list)(Reservation.objects.order_by("pk").values_list("outcome", flat=True))
    assert outcomes == ["stopped", "interrupted"]
    counter = await usage_of(alice)
    assert (counter.active_answers, counter.held_tokens) == (0, 0)
    await socket.disconnect()
