"""Every way a generation ends writes exactly one audit event, in the settlement's transaction.

The upstream is the deterministic stub engine (tests/chat_stub_engine.py): the point is the
portal's settlement, not the model. tests/test_chat_engine.py covers the real engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import IntegrityError
from django.utils import timezone

from chat import conversations
from chat.models import Conversation
from inference.generation import STOP_BY_USER, STOP_DETACHED, Generation, Outcome, prepare
from inference.sampling import parse_sampling
from portal.audit import chain
from portal.audit.models import ChainHead, Event, EventContent
from tests.audit_helpers import run_verify, tamper
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script
from tests.test_chat_generation import RecordingSink, prepared_for
from tests.test_chat_socket import streaming_without_a_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


@database_sync_to_async
def generation_events() -> list[Event]:
    return list(Event.objects.filter(action="generation").order_by("seq"))


async def only_event_of(outcome: Outcome) -> Event:
    events = await generation_events()
    assert len(events) == 1, [(event.outcome, event.request_id) for event in events]
    event: Event = events[0]
    assert event.request_id == outcome.request_id
    return event


async def test_a_complete_answer_writes_one_event_with_its_tokens(alice, stub):
    outcome = await Generation(await prepared_for(alice), RecordingSink()).run()
    event = await only_event_of(outcome)
    assert (event.outcome, event.actor_name, event.channel) == ("complete", "alice", "chat")
    assert (event.model, event.engine) == (outcome.model, outcome.engine)
    assert (event.prompt_tokens, event.completion_tokens) == (11, 2)
    assert event.ttft_ms is not None
    assert event.duration_ms is not None


async def test_a_stop_before_the_first_token_writes_one_stopped_event(alice, stub):
    generation = Generation(await prepared_for(alice), RecordingSink())
    generation.stop(STOP_BY_USER)
    outcome = await generation.run()
    assert (await only_event_of(outcome)).outcome == "stopped"


@pytest.mark.parametrize(("reason", "expected"), [(STOP_BY_USER, "stopped"), (STOP_DETACHED, "interrupted")])
async def test_a_stop_mid_answer_writes_one_event(alice, stub, reason, expected):
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    sink = RecordingSink()
    generation = Generation(await prepared_for(alice), sink)
    task = asyncio.create_task(generation.run())
    while not sink.frames:
        await asyncio.sleep(0.01)
    generation.stop(reason)
    outcome = await task
    event = await only_event_of(outcome)
    assert event.outcome == expected
    assert event.completion_tokens is not None
    assert event.completion_tokens > 0


async def test_an_engine_crash_mid_answer_writes_one_engine_crash_event(alice, stub):
    stub.script = Script(pieces=[("", "one "), ("", "two "), ("", "three")], crash_after=2)
    outcome = await Generation(await prepared_for(alice), RecordingSink()).run()
    assert outcome.status == "interrupted"
    assert (await only_event_of(outcome)).outcome == "engine_crash"


async def test_an_engine_crash_before_any_token_writes_one_engine_crash_event(alice, stub):
    stub.script = Script(crash_after=0)
    outcome = await Generation(await prepared_for(alice), RecordingSink()).run()
    assert outcome.status == "error"
    event = await only_event_of(outcome)
    assert event.outcome == "engine_crash"
    assert event.details["error_code"] == outcome.error_code == "engine_disconnected"


async def test_a_shutdown_cancellation_writes_one_interrupted_event(alice, stub):
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    sink = RecordingSink()
    task = asyncio.create_task(Generation(await prepared_for(alice), sink).run())
    while not sink.frames:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [outcome] = sink.persisted
    event = await only_event_of(outcome)
    assert (event.outcome, event.details["error_code"]) == ("interrupted", "cancelled")


async def test_an_answer_whose_process_died_writes_one_lost_event(alice):
    _, answer_id = await streaming_without_a_process(alice, conversations.LOST_AFTER_SECONDS + 1)
    await database_sync_to_async(conversations.settled_or_lost)(answer_id)
    await database_sync_to_async(conversations.settled_or_lost)(answer_id)  # asked twice, marked once
    events = await generation_events()
    assert [(event.outcome, event.actor_name) for event in events] == [("lost", "alice")]


async def test_a_request_refused_for_want_of_an_engine_writes_one_refused_event(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to(
        {"type": "chat.send", "conversation": None, "content": "hi", "params": {"model": "no-such-model"}}
    )
    frames = await frames_until(socket, "error")
    assert frames[-1]["code"] == "engine_unavailable"
    await socket.disconnect()
    events = await generation_events()
    assert [(event.outcome, event.model, event.actor_name) for event in events] == [
        ("refused", "no-such-model", "alice")
    ]


async def test_bad_parameters_are_not_a_generation_event(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "hi", "params": {"top_p": 5}})
    frames = await frames_until(socket, "error")
    assert frames[-1]["code"] == "invalid_params"
    await socket.disconnect()
    assert await generation_events() == []


class PersistingSink(RecordingSink):
    """Stores the outcome in the database, as the chat does (a conversation stands in for it)."""

    def __init__(self, owner: Any) -> None:
        super().__init__()
        self.owner = owner

    def persist(self, outcome: Outcome) -> None:
        Conversation.objects.create(owner=self.owner, title=f"settled {outcome.request_id}")


async def test_a_failed_audit_write_rolls_the_settlement_back(alice, stub):
    head_before = await database_sync_to_async(lambda: ChainHead.objects.get().seq)()
    # A row already sits where the next event goes: the database refuses the append.
    blocker = [head_before + 1, "2026-01-01 00:00:00+00:00", "x" * 64]
    insert = (
        "INSERT INTO audit_event (seq, created_at, action, actor_name, ip, target, outcome, request_id, channel,"
        " model, engine, data, prev_hash, hash)"
        " VALUES (%s, %s, 'blocker', '', '', '', 'ok', '', '', '', '', '{}', '', %s)"
    )
    await database_sync_to_async(tamper)(insert, blocker)
    with pytest.raises(IntegrityError):
        await Generation(await prepared_for(alice), PersistingSink(alice)).run()
    await database_sync_to_async(tamper)("DELETE FROM audit_event WHERE seq = %s", [head_before + 1])
    assert not await database_sync_to_async(Conversation.objects.filter(title__startswith="settled").exists)()
    assert await generation_events() == []
    assert await database_sync_to_async(lambda: ChainHead.objects.get().seq)() == head_before
    # And with the trail writable again, the settlement and its event commit together.
    outcome = await Generation(await prepared_for(alice), PersistingSink(alice)).run()
    assert (await only_event_of(outcome)).outcome == "complete"
    assert await database_sync_to_async(Conversation.objects.filter(title=f"settled {outcome.request_id}").exists)()


@database_sync_to_async
def prepared_with_question(user: Any, question: str) -> Any:
    return prepare(user.pk, [{"role": "user", "content": question}], parse_sampling({}, user), source="chat")


async def test_no_text_is_kept_with_a_generation_by_default(alice, stub):
    await Generation(await prepared_with_question(alice, "mail bob@example.com"), RecordingSink()).run()
    assert not await database_sync_to_async(EventContent.objects.exists)()
    event = (await generation_events())[0]
    assert "content_sha256" not in event.details


async def test_the_content_policy_keeps_redacted_text_bound_to_the_chain_until_retention(alice, stub, settings):
    settings.AUDIT_CONTENT_DAYS = 7
    outcome = await Generation(await prepared_with_question(alice, "mail bob@example.com"), RecordingSink()).run()
    event = await only_event_of(outcome)
    kept = await database_sync_to_async(EventContent.objects.get)(event_seq=event.seq)
    assert kept.texts == {"prompt": "mail [REDACTED:email]", "answer": outcome.content}
    digest = hashlib.sha256(chain.canonical_json(kept.texts).encode()).hexdigest()
    assert event.details["content_sha256"] == digest
    # Retention deletes the text after the period; the chain still verifies without it.
    old = timezone.now() - timedelta(days=8)
    await database_sync_to_async(EventContent.objects.update)(created_at=old)
    await database_sync_to_async(call_command)("audit", "retention", stdout=io.StringIO())
    assert not await database_sync_to_async(EventContent.objects.exists)()
    assert (await database_sync_to_async(run_verify)())[0] == 0
