"""``manage.py quota show|set|reset``."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts import ledger
from accounts.models import Adjustment, Policy, UserPolicy

pytestmark = pytest.mark.django_db


def quota(*args: str) -> str:
    out = io.StringIO()
    call_command("quota", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def engines(db: Any) -> None:
    from inference.models import EngineConfig

    EngineConfig.objects.create(name="small", served_model_name="small-model", model="/models/x")
    EngineConfig.objects.create(name="large", served_model_name="large-model", model="/models/x")


def test_an_admin_gives_a_member_a_daily_budget_and_one_concurrent_answer(alice):
    printed = quota("set", "alice", "--tokens-per-day", "2000", "--concurrent", "1")
    assert "tokens per day: 2,000" in printed
    assert "concurrent answers: 1" in printed
    shown = json.loads(quota("show", "alice", "--json"))
    assert shown["policy"]["tokens_per_day"] == 2000
    assert shown["policy"]["tokens_per_month"] is None
    assert shown["policy"]["source"] == "personal policy 'personal: alice'"


def test_setting_again_changes_only_the_options_given(alice):
    quota("set", "alice", "--tokens-per-day", "2000", "--requests-per-day", "50")
    quota("set", "alice", "--tokens-per-day", "unlimited")
    shown = json.loads(quota("show", "alice", "--json"))
    assert (shown["policy"]["tokens_per_day"], shown["policy"]["requests_per_day"]) == (None, 50)
    assert Policy.objects.count() == 1


def test_show_prints_todays_usage(alice):
    reservation = ledger.reserve(
        alice, model="m", channel="chat", prompt_tokens=10, max_tokens=50, request_id=uuid.uuid4().hex
    )
    ledger.settle(reservation, prompt_tokens=10, completion_tokens=25, outcome="complete")
    printed = quota("show", "alice")
    assert "today: 35 tokens, 1 answers" in printed
    assert "models: all" in printed


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--tokens-per-day", "-5"], "--tokens-per-day"),
        (["--tokens-per-month", "99999999999999999"], "--tokens-per-month"),
        (["--concurrent", "0"], "--concurrent"),
        (["--requests-per-day", "lots"], "--requests-per-day"),
    ],
)
def test_a_negative_absurd_or_malformed_value_is_refused_with_the_option_named(alice, args, named):
    with pytest.raises(CommandError) as caught:
        quota("set", "alice", *args)
    assert named in str(caught.value)
    assert not UserPolicy.objects.exists()
    assert not Policy.objects.exists()


def test_an_unknown_model_is_refused_with_the_served_names(alice, engines):
    with pytest.raises(CommandError) as caught:
        quota("set", "alice", "--models", "small-model,gpt-5")
    message = str(caught.value)
    assert "--models" in message
    assert "gpt-5" in message
    assert "large-model, small-model" in message
    assert not UserPolicy.objects.exists()


def test_models_limit_the_user_to_those_names(alice, engines):
    quota("set", "alice", "--models", "small-model")
    shown = json.loads(quota("show", "alice", "--json"))
    assert shown["policy"]["models"] == ["small-model"]


def test_an_unknown_user_is_an_error():
    with pytest.raises(CommandError, match="No user 'nobody'"):
        quota("show", "nobody")


def test_set_without_a_limit_is_an_error(alice):
    with pytest.raises(CommandError, match="Nothing to set"):
        quota("set", "alice")


def test_a_reset_needs_a_reason_and_gives_back_todays_usage(alice):
    with pytest.raises(CommandError, match="reason"):
        quota("reset", "alice", "--reason", "   ")
    reservation = ledger.reserve(alice, model="m", channel="chat", prompt_tokens=10, max_tokens=50, request_id="r1")
    ledger.settle(reservation, prompt_tokens=10, completion_tokens=40, outcome="complete")
    assert "Gave back 50 tokens" in quota("reset", "alice", "--reason", "engine looped")
    assert Adjustment.objects.get().reason == "reset: engine looped"
    assert "today: 0 tokens" in quota("show", "alice")
