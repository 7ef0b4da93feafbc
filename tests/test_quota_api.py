"""Quotas through the /v1 API with the real ledger: the same budget as the chat, the api channel, 429s."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group

from accounts.models import DailyUsage, GroupPolicy, Policy, UsageCounter
from accounts.roles import MEMBERS
from tests.api_client import call, chat, key_for
from tests.chat_socket import (
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


@database_sync_to_async
def members_get(**limits: Any) -> None:
    policy = Policy.objects.create(name="members", **limits)
    GroupPolicy.objects.create(group=Group.objects.get(name=MEMBERS), policy=policy)


async def test_an_api_answer_is_counted_on_the_api_channel_and_the_next_one_over_budget_is_a_429(alice, stub):
    await members_get(tokens_per_day=15)
    secret = await database_sync_to_async(key_for)(alice)
    first = await call(chat(), key=secret)
    assert first.status == 200, first.body
    counter = await database_sync_to_async(UsageCounter.objects.get)(user=alice)
    assert (counter.day_tokens, counter.held_tokens, counter.active_answers) == (13, 0, 0)
    channels = await database_sync_to_async(list)(DailyUsage.objects.values_list("channel", flat=True))
    assert channels == ["api"]
    refused = await call(chat(), key=secret)
    assert refused.status == 429
    assert int(refused.headers["retry-after"]) >= 1
    error = json.loads(refused.body)["error"]
    assert error["code"] == "quota_exceeded"
    assert "daily budget of 15 tokens" in error["message"]
    assert len(stub.requests) == 1
