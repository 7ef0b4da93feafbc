"""The home page: a dashboard of the widgets the apps (and plugins) register, each for its roles."""

from __future__ import annotations

import io
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from chat.models import Conversation, Message
from inference.models import EngineState
from tests.chat_stub_engine import register


def widgets(client) -> str:
    response = client.get("/")
    assert response.status_code == 200
    return str(response.content.decode())


def test_a_member_sees_the_models_their_budget_and_their_recent_conversations(alice, bob, client_for):
    register("http://127.0.0.1:9", name="small")
    EngineState.objects.filter(engine__name="small").update(running_requests=2, waiting_requests=1)
    for title in ["First", "Second"]:
        Conversation.objects.create(owner=alice, title=title)
    Conversation.objects.create(owner=bob, title="Bob's secret")
    page = widgets(client_for(alice))
    models = page.split('data-widget="engines"', 1)[1].split("</section>", 1)[0]
    assert "stub-model" in models
    assert "ready" in models
    assert "3 requests running or waiting" in models
    recent = page.split('data-widget="recent-conversations"', 1)[1].split("</section>", 1)[0]
    assert recent.index("Second") < recent.index("First"), "newest first"
    assert "Bob&#x27;s secret" not in page
    assert "No limits" in page.split('data-widget="budget"', 1)[1]
    assert 'data-widget="failures"' not in page


def test_an_auditor_sees_no_chat_widgets(audrey, client_for):
    page = widgets(client_for(audrey))
    for widget in ["engines", "recent-conversations", "budget", "failures"]:
        assert f'data-widget="{widget}"' not in page


def test_an_admin_sees_the_failed_answers_of_the_last_day_by_reason(alice, adam, client_for):
    conversation = Conversation.objects.create(owner=alice, title="t")

    def answer(status, code):
        return Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, status=status, error_code=code
        )

    answer(Message.Status.ERROR, "engine_unreachable")
    answer(Message.Status.ERROR, "engine_unreachable")
    answer(Message.Status.INTERRUPTED, "detached")
    answer(Message.Status.COMPLETE, "")
    old = answer(Message.Status.ERROR, "old_failure")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    failures = widgets(client_for(adam)).split('data-widget="failures"', 1)[1].split("</section>", 1)[0]
    assert "<td>error</td><td>engine_unreachable</td><td>2</td>" in failures
    assert "<td>interrupted</td><td>detached</td><td>1</td>" in failures
    assert "old_failure" not in failures
    assert "No request was refused." in failures


def test_an_admin_sees_the_refusals_of_the_last_day_from_the_audit_trail(adam, client_for):
    from portal.audit.trail import record

    record("generation", outcome="over_quota")
    record("generation", outcome="over_quota")
    record("generation", outcome="refused", data={"code": "refused_by_plugin"})
    record("generation", outcome="complete")
    failures = widgets(client_for(adam)).split('data-widget="failures"', 1)[1].split("</section>", 1)[0]
    assert "<td>over_quota</td><td>2</td>" in failures
    assert "<td>refused</td><td>1</td>" in failures
    assert "complete" not in failures


def test_an_auditor_sees_the_state_of_the_audit_chain(audrey, alice, client_for):
    from portal.audit.trail import record

    record("test.event")
    page = widgets(client_for(audrey))
    chain = page.split('data-widget="audit-chain"', 1)[1].split("</section>", 1)[0]
    assert "chain verifies" in chain
    assert 'data-widget="audit-chain"' not in widgets(client_for(alice))


def test_a_member_with_a_daily_budget_sees_the_tokens_left(alice, client_for):
    call_command("quota", "set", "alice", "--tokens-per-day", "2000", stdout=io.StringIO())
    page = client_for(alice).get("/").content.decode()
    assert "<strong>2000</strong> tokens left today" in page
    assert "No limits" not in page
