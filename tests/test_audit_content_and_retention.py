"""Conversations are private (staff read them only with an audited reason); retention and prune."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from chat.models import Conversation, Message
from portal.audit.models import Checkpoint, Event
from portal.audit.retention import PruneRefused, prune
from tests.audit_helpers import run_verify, some_events, tamper

pytestmark = pytest.mark.django_db

REASON = "Complaint 42: checking for abuse"


@pytest.fixture
def secret_chat(alice: Any) -> Conversation:
    conversation = Conversation.objects.create(owner=alice, title="My medical question", system_prompt="be kind")
    Message.objects.create(conversation=conversation, role="user", content="Is my rash serious?")
    return conversation


def test_django_admin_shows_no_conversation_content(
    adam: Any, secret_chat: Conversation, client_for: Callable[[Any], Client]
) -> None:
    client = client_for(adam)
    for url in ["/admin/chat/conversationrecord/", f"/admin/chat/conversationrecord/{secret_chat.pk}/change/"]:
        body = client.get(url).content.decode()
        assert "rash" not in body
        assert "My medical question" not in body
        assert "be kind" not in body
    assert client.post(f"/admin/chat/conversationrecord/{secret_chat.pk}/change/", {"title": "x"}).status_code == 403


def test_an_admin_reads_a_conversation_only_after_giving_a_reason_which_is_audited(
    adam: Any, secret_chat: Conversation, client_for: Callable[[Any], Client]
) -> None:
    client = client_for(adam)
    url = f"/chat/staff/{secret_chat.pk}/"
    assert "rash" not in client.get(url).content.decode()
    response = client.post(url, {"reason": REASON})
    assert response.status_code == 200
    assert "Is my rash serious?" in response.content.decode()
    event = Event.objects.get(action="content.viewed")
    assert (event.actor_name, event.details["reason"]) == ("adam", REASON)
    assert event.target == f"conversation {secret_chat.pk} of alice"


@pytest.mark.parametrize("reason", ["", "   short  ", "x" * 501, "bad\x00reason here"])
def test_a_missing_or_bad_reason_shows_nothing_and_records_nothing(
    reason: str, adam: Any, secret_chat: Conversation, client_for: Callable[[Any], Client]
) -> None:
    response = client_for(adam).post(f"/chat/staff/{secret_chat.pk}/", {"reason": reason})
    assert response.status_code == 400
    assert "rash" not in response.content.decode()
    assert not Event.objects.filter(action="content.viewed").exists()


@pytest.mark.parametrize("persona", ["bob", "audrey"])
def test_only_admins_may_ask_to_read_a_conversation(
    persona: str, request: pytest.FixtureRequest, secret_chat: Conversation, client_for: Callable[[Any], Client]
) -> None:
    client = client_for(request.getfixturevalue(persona))
    assert client.post(f"/chat/staff/{secret_chat.pk}/", {"reason": REASON}).status_code == 403
    assert not Event.objects.filter(action="content.viewed").exists()


def test_reading_an_unknown_conversation_is_a_404(adam: Any, client_for: Callable[[Any], Client]) -> None:
    assert client_for(adam).post("/chat/staff/999999/", {"reason": REASON}).status_code == 404
    assert client_for(adam).post(f"/chat/staff/{10**30}/", {"reason": REASON}).status_code == 404
    assert not Event.objects.filter(action="content.viewed").exists()


def test_prune_keeps_a_signed_checkpoint_so_the_rest_still_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    now = timezone.now()
    # Three events written 100 days ago, three today.
    monkeypatch.setattr(timezone, "now", lambda: now - timedelta(days=100))
    events = some_events(3)
    monkeypatch.undo()
    events += some_events(3)
    assert run_verify()[0] == 0

    out = io.StringIO()
    before = (timezone.now() - timedelta(days=50)).date().isoformat()
    call_command("audit", "prune", "--before", before, stdout=out)
    assert "Pruned 3 event(s)" in out.getvalue()
    assert sorted(Event.objects.values_list("seq", flat=True))[0] == events[3].seq
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.seq == events[2].seq
    prune_event = Event.objects.get(action="audit.prune")
    assert prune_event.details["deleted"] == 3
    code, message = run_verify()
    assert code == 0, message
    # A forged checkpoint (no site key) breaks verification.
    tamper("UPDATE audit_checkpoint SET signature = %s", ["0" * 64])
    code, message = run_verify()
    assert code == 1
    assert "checkpoint" in message


def test_prune_refuses_a_broken_trail_and_deletes_nothing() -> None:
    events = some_events(3)
    tamper("UPDATE audit_event SET target = 'x' WHERE seq = %s", [events[0].seq])
    with pytest.raises(PruneRefused):
        prune(timezone.now() + timedelta(days=1))
    assert Event.objects.count() == 3
    assert not Checkpoint.objects.exists()


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", ""])
def test_prune_with_a_bad_date_is_a_clear_error(value: str) -> None:
    some_events(2)
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("audit", "prune", "--before", value)
    assert Event.objects.count() == 2


def test_retention_purges_old_conversations_and_is_itself_an_event(
    alice: Any, secret_chat: Conversation, settings: Any
) -> None:
    settings.CHAT_RETENTION_DAYS = 30
    Conversation.objects.filter(pk=secret_chat.pk).update(updated_at=timezone.now() - timedelta(days=31))
    out = io.StringIO()
    call_command("audit", "retention", stdout=out)
    assert "conversations: 1" in out.getvalue()
    assert "audit_events: kept (retention off)" in out.getvalue()
    assert not Conversation.objects.filter(pk=secret_chat.pk).exists()
    run = Event.objects.get(action="retention.run")
    assert run.details["deleted"] == {"audit_content": None, "conversations": 1, "audit_events": None}


def test_purgechats_is_an_audited_retention_run(alice: Any, secret_chat: Conversation) -> None:
    Conversation.objects.filter(pk=secret_chat.pk).update(updated_at=timezone.now() - timedelta(days=31))
    call_command("purgechats", "--days", "30", stdout=io.StringIO())
    assert Event.objects.get(action="retention.run").details["deleted"] == {"conversations": 1}
