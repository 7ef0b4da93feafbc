"""Changes of policies and usage are audit events: before, after, the reason, the actor."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from accounts import ledger
from accounts.models import Policy
from portal.audit.models import Event
from portal.audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def test_quota_set_writes_one_event_with_before_and_after(alice):
    call_command("quota", "set", "alice", "--tokens-per-day", "2000", stdout=io.StringIO())
    event = Event.objects.get(action="policy.override")
    data = json.loads(event.data) if isinstance(event.data, str) else event.data
    assert data["before"]["tokens_per_day"] is None
    assert data["after"]["tokens_per_day"] == 2000
    assert event.target == "user:alice"
    assert verify_chain().ok


def test_a_manual_adjustment_records_its_reason_and_actor(alice, adam):
    ledger.adjust(alice, tokens=500, reason="refund for a broken answer", actor=adam)
    event = Event.objects.get(action="usage.adjust")
    data = json.loads(event.data) if isinstance(event.data, str) else event.data
    assert data["reason"] == "refund for a broken answer"
    assert data["after"]["tokens_today"] - data["before"]["tokens_today"] == 500
    assert event.actor_name == "adam"


def test_an_admin_changing_a_policy_in_admin_is_audited(adam, client_for):
    policy = Policy.objects.create(name="Members budget", tokens_per_day=1000)
    response = client_for(adam).post(
        f"/admin/accounts/policy/{policy.pk}/change/",
        {
            "name": "Members budget",
            "all_models": "on",
            "tokens_per_day": "2000",
            "group_assignments-TOTAL_FORMS": "0",
            "group_assignments-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = Event.objects.get(action="policy.change")
    data = json.loads(event.data) if isinstance(event.data, str) else event.data
    assert (data["before"]["tokens_per_day"], data["after"]["tokens_per_day"]) == (1000, 2000)
    assert event.actor_name == "adam"
