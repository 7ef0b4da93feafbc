"""Policies and the usage ledger through their public functions (accounts/policies.py, accounts/ledger.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from accounts import ledger
from accounts.ledger import QuotaRefused
from accounts.models import Adjustment, DailyUsage, GroupPolicy, Policy, Reservation, UsageCounter, UserPolicy
from accounts.policies import effective_policy, set_user_override
from accounts.roles import MEMBERS

pytestmark = pytest.mark.django_db

UNLIMITED_DEFAULT: dict[str, Any] = {
    "model_names": [],
    "tokens_per_day": None,
    "tokens_per_month": None,
    "requests_per_day": None,
    "requests_per_minute": None,
    "concurrent_answers": None,
    "max_tokens_per_answer": None,
    "max_prompt_tokens": None,
    "priority": None,
}


@pytest.fixture
def engines(db: Any) -> list[str]:
    """Two configured engines, so policies have served model names to choose from."""
    from inference.models import EngineConfig

    for name in ("small", "large"):
        EngineConfig.objects.create(name=name, served_model_name=f"{name}-model", model="/models/x")
    return ["large-model", "small-model"]


def give_group(group_name: str, **limits: Any) -> Policy:
    policy = Policy.objects.create(name=f"policy of {group_name}", **limits)
    group, _ = Group.objects.get_or_create(name=group_name)
    GroupPolicy.objects.update_or_create(group=group, defaults={"policy": policy})
    return policy


def reserve(user: Any, prompt: int = 10, max_tokens: int = 100, model: str = "small-model") -> Reservation:
    return ledger.reserve(
        user, model=model, channel="chat", prompt_tokens=prompt, max_tokens=max_tokens, request_id=uuid.uuid4().hex
    )


def counter(user: Any) -> UsageCounter:
    return UsageCounter.objects.get(user=user)


# --- Which policy applies -------------------------------------------------------------


def test_a_user_in_no_group_with_a_policy_gets_the_site_default(alice, settings):
    settings.DEFAULT_POLICY = {**UNLIMITED_DEFAULT, "tokens_per_day": 5000, "model_names": ["small-model"]}
    policy = effective_policy(alice)
    assert policy.source == "site default"
    assert policy.tokens_per_day == 5000
    assert (policy.allows("small-model"), policy.allows("large-model")) == (True, False)


def test_the_members_policy_applies_to_a_member(alice):
    give_group(MEMBERS, tokens_per_day=2000, concurrent_answers=1)
    policy = effective_policy(alice)
    assert (policy.tokens_per_day, policy.concurrent_answers) == (2000, 1)
    assert "Members" in policy.source


def test_several_groups_give_the_most_generous_value_field_by_field(alice, engines):
    give_group(MEMBERS, tokens_per_day=2000, tokens_per_month=None, concurrent_answers=1, priority=5)
    give_group("Researchers", tokens_per_day=9000, tokens_per_month=100_000, concurrent_answers=None, priority=1)
    give_group("Interns", tokens_per_day=10, all_models=False, model_names=["small-model"])
    alice.groups.add(Group.objects.get(name="Researchers"), Group.objects.get(name="Interns"))
    policy = effective_policy(alice)
    assert policy.tokens_per_day == 9000
    assert policy.tokens_per_month is None  # unlimited beats any number
    assert policy.concurrent_answers is None
    assert policy.priority == 1  # lower is served first
    assert policy.all_models


def test_a_personal_override_wins_over_the_groups(alice):
    give_group(MEMBERS, tokens_per_day=2000)
    UserPolicy.objects.create(user=alice, policy=Policy.objects.create(name="tight", tokens_per_day=10))
    assert effective_policy(alice).tokens_per_day == 10


def test_deleting_a_policy_leaves_its_users_on_the_next_one_that_applies(alice, settings):
    settings.DEFAULT_POLICY = {**UNLIMITED_DEFAULT, "tokens_per_day": 7}
    members = give_group(MEMBERS, tokens_per_day=2000)
    override = Policy.objects.create(name="tight", tokens_per_day=10)
    UserPolicy.objects.create(user=alice, policy=override)
    override.delete()
    assert effective_policy(alice).tokens_per_day == 2000
    members.delete()
    assert effective_policy(alice).tokens_per_day == 7


# --- What a valid policy is ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tokens_per_day", -1),
        ("tokens_per_month", 10**13),
        ("requests_per_day", -5),
        ("requests_per_minute", 10**10),
        ("concurrent_answers", 0),
        ("concurrent_answers", 10**6),
        ("max_tokens_per_answer", 0),
        ("max_prompt_tokens", 10**9),
        ("priority", 10**7),
    ],
)
def test_a_negative_or_absurd_value_is_refused_with_the_field_named(field, value):
    policy = Policy(name="bad", **{field: value})
    with pytest.raises(ValidationError) as caught:
        policy.full_clean()
    assert field in caught.value.message_dict
    assert not Policy.objects.exists()


def test_an_unknown_model_is_refused_with_the_served_names_listed(engines):
    policy = Policy(name="typo", all_models=False, model_names=["smal-model"])
    with pytest.raises(ValidationError) as caught:
        policy.full_clean()
    [message] = caught.value.message_dict["model_names"]
    assert "smal-model" in message
    assert "large-model, small-model" in message


def test_the_cli_override_refuses_a_bad_value_and_saves_nothing(alice, adam):
    with pytest.raises(ValidationError) as caught:
        set_user_override(alice, adam, tokens_per_day=-3)
    assert "tokens_per_day" in caught.value.message_dict
    assert not UserPolicy.objects.exists()
    assert not Policy.objects.exists()


# --- Reserving ------------------------------------------------------------------------


def test_a_member_over_the_daily_budget_is_refused_with_the_reset_time(alice, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    give_group(MEMBERS, tokens_per_day=300)
    first = reserve(alice, prompt=10, max_tokens=100)
    ledger.settle(first, prompt_tokens=10, completion_tokens=280, outcome="complete")
    with pytest.raises(QuotaRefused) as caught:
        reserve(alice, prompt=20)
    refusal = caught.value
    assert refusal.code == "quota_exceeded"
    assert refusal.limit == {"name": "tokens_per_day", "value": 300}
    assert "daily budget of 300 tokens is used up" in refusal.message
    resets_at = datetime.fromisoformat(refusal.details()["resets_at"])
    assert (resets_at.hour, resets_at.minute) == (0, 0)
    assert resets_at.utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Berlin's midnight
    assert refusal.retry_after is not None
    assert 0 < refusal.retry_after <= 86_400


def test_what_is_left_of_the_budget_caps_the_answer(alice):
    give_group(MEMBERS, tokens_per_day=150)
    reservation = reserve(alice, prompt=10, max_tokens=1000)
    assert reservation.max_tokens == 140
    assert counter(alice).held_tokens == 150


def test_the_monthly_budget_counts_every_day_of_the_month(alice):
    give_group(MEMBERS, tokens_per_month=500)
    ledger.settle(reserve(alice), prompt_tokens=10, completion_tokens=480, outcome="complete")
    with pytest.raises(QuotaRefused) as caught:
        reserve(alice)
    assert caught.value.limit == {"name": "tokens_per_month", "value": 500}


def test_the_answer_after_the_concurrency_cap_is_refused_until_one_finishes(alice):
    give_group(MEMBERS, concurrent_answers=2)
    first, _second = reserve(alice), reserve(alice)
    with pytest.raises(QuotaRefused) as caught:
        reserve(alice)
    assert caught.value.code == "too_many_answers"
    assert caught.value.limit == {"name": "concurrent_answers", "value": 2}
    ledger.settle(first, prompt_tokens=10, completion_tokens=5, outcome="stopped")
    assert reserve(alice).pk


def test_more_answers_a_minute_than_the_policy_allows_are_rate_limited(alice):
    give_group(MEMBERS, requests_per_minute=2)
    start = datetime(2026, 3, 3, 12, 0, 0, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=start):
        reserve(alice)
        reserve(alice)
        with pytest.raises(QuotaRefused) as caught:
            reserve(alice)
    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == 60
    with mock.patch("django.utils.timezone.now", return_value=start + timedelta(seconds=61)):
        assert reserve(alice).pk


def test_the_answers_per_day_are_counted(alice):
    give_group(MEMBERS, requests_per_day=1)
    reserve(alice)
    with pytest.raises(QuotaRefused) as caught:
        reserve(alice)
    assert caught.value.limit == {"name": "requests_per_day", "value": 1}


def test_a_model_outside_the_policy_is_refused(alice, engines):
    give_group(MEMBERS, all_models=False, model_names=["small-model"])
    with pytest.raises(QuotaRefused) as caught:
        reserve(alice, model="large-model")
    assert caught.value.code == "model_not_allowed"
    assert caught.value.details()["allowed"] == ["small-model"]
    assert not Reservation.objects.exists()


def test_a_prompt_longer_than_the_policy_allows_is_refused(alice):
    give_group(MEMBERS, max_prompt_tokens=50)
    with pytest.raises(QuotaRefused) as caught:
        reserve(alice, prompt=51)
    assert caught.value.limit == {"name": "max_prompt_tokens", "value": 50}


def test_an_unknown_channel_is_a_programming_error(alice):
    with pytest.raises(ValueError, match="channel"):
        ledger.reserve(alice, model="m", channel="fax", prompt_tokens=1, max_tokens=1, request_id="x")


# --- Settling -------------------------------------------------------------------------


def test_settling_counts_the_actual_usage_once(alice):
    give_group(MEMBERS, tokens_per_day=1000)
    reservation = reserve(alice, prompt=10, max_tokens=500)
    remaining = ledger.settle(reservation, prompt_tokens=12, completion_tokens=30, outcome="complete")
    again = ledger.settle(reservation, prompt_tokens=12, completion_tokens=30, outcome="complete")
    assert remaining["tokens_today"] == again["tokens_today"] == 1000 - 42
    state = counter(alice)
    assert (state.day_tokens, state.held_tokens, state.active_answers) == (42, 0, 0)
    [row] = DailyUsage.objects.filter(user=alice)
    assert (row.requests, row.prompt_tokens, row.completion_tokens, row.channel) == (1, 12, 30, "chat")


def test_a_cancelled_reservation_counts_nothing(alice):
    give_group(MEMBERS, requests_per_day=1)
    ledger.settle(reserve(alice), prompt_tokens=10, completion_tokens=0, outcome="cancelled")
    state = counter(alice)
    assert (state.day_tokens, state.day_requests, state.held_tokens, state.active_answers) == (0, 0, 0, 0)
    assert not DailyUsage.objects.exists()
    assert reserve(alice).pk  # the day's one answer is still there


def test_a_reservation_settled_after_midnight_counts_for_its_own_day(alice, settings):
    settings.TIME_ZONE = "UTC"
    give_group(MEMBERS, tokens_per_day=1000)
    evening = datetime(2026, 3, 3, 23, 59, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=evening):
        reservation = reserve(alice, prompt=10, max_tokens=500)
    with mock.patch("django.utils.timezone.now", return_value=evening + timedelta(minutes=2)):
        remaining = ledger.settle(reservation, prompt_tokens=10, completion_tokens=90, outcome="complete")
    assert remaining["tokens_today"] == 1000
    assert DailyUsage.objects.get(user=alice).day.isoformat() == "2026-03-03"
    assert counter(alice).month_tokens == 100


def test_the_lost_sweep_settles_a_reservation_and_frees_its_slot(alice):
    give_group(MEMBERS, concurrent_answers=1)
    reservation = reserve(alice, prompt=10, max_tokens=100)
    assert ledger.settle_lost([reservation.request_id, "unknown"]) == 1
    assert ledger.settle_lost([reservation.request_id]) == 0
    reservation.refresh_from_db()
    assert reservation.outcome == "lost"
    state = counter(alice)
    assert (state.held_tokens, state.active_answers, state.day_tokens) == (0, 0, 10)
    assert reserve(alice).pk


# --- Manual corrections ---------------------------------------------------------------


def test_an_adjustment_needs_a_reason(alice, adam):
    with pytest.raises(ValueError, match="reason"):
        ledger.adjust(alice, tokens=100, reason="  ", actor=adam)
    assert not Adjustment.objects.exists()


def test_a_reset_gives_back_todays_usage_and_keeps_the_reports_equal_to_the_ledger(alice, adam):
    give_group(MEMBERS, tokens_per_day=100)
    ledger.settle(reserve(alice, prompt=10, max_tokens=80), prompt_tokens=10, completion_tokens=80, outcome="complete")
    adjustment = ledger.reset(alice, reason="engine misbehaved", actor=adam)
    assert adjustment is not None
    assert (adjustment.tokens, adjustment.made_by) == (-90, adam)
    assert counter(alice).day_tokens == 0
    assert sum(row.total_tokens for row in DailyUsage.objects.filter(user=alice)) == 0
    assert ledger.reset(alice, reason="again", actor=adam) is None
