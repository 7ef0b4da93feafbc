"""The Usage page, and the admin's policies, usage report (with CSV) and manual adjustments."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Group

from accounts import ledger
from accounts.models import Adjustment, DailyUsage, GroupPolicy, Policy, UsageCounter
from accounts.roles import MEMBERS

pytestmark = pytest.mark.django_db


def use(
    user: Any, *, model: str = "small-model", channel: str = "chat", prompt: int = 10, completion: int = 20
) -> None:
    reservation = ledger.reserve(
        user, model=model, channel=channel, prompt_tokens=prompt, max_tokens=100, request_id=uuid.uuid4().hex
    )
    ledger.settle(reservation, prompt_tokens=prompt, completion_tokens=completion, outcome="complete")


@pytest.fixture
def engines(db: Any) -> None:
    from inference.models import EngineConfig

    EngineConfig.objects.create(name="small", served_model_name="small-model", model="/models/x")
    EngineConfig.objects.create(name="large", served_model_name="large-model", model="/models/x")


def test_a_member_sees_todays_usage_against_the_limits_and_a_chart(alice, client_for):
    policy = Policy.objects.create(name="members", tokens_per_day=2000, concurrent_answers=1)
    GroupPolicy.objects.create(group=Group.objects.get(name=MEMBERS), policy=policy)
    use(alice, prompt=100, completion=250)
    use(alice, model="large-model", channel="api", prompt=5, completion=5)
    response = client_for(alice).get("/usage/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "360 tokens of 2,000" in page  # the same number as the ledger's counter
    assert UsageCounter.objects.get(user=alice).day_tokens == 360
    assert "group policy of Members" in page
    assert "vendor/chart.js/dist/chart.umd.min.js" in page
    chart = response.context["chart"]
    assert len(chart["labels"]) == 30
    assert sorted(series["label"] for series in chart["series"]) == ["large-model · api", "small-model · chat"]
    assert sum(sum(series["data"]) for series in chart["series"]) == 360
    assert json.loads(page.split('id="usage-chart-data" type="application/json">')[1].split("</script>")[0]) == chart


def test_the_chart_library_is_served_from_npm(alice, client_for):
    response = client_for(alice).get("/static/vendor/chart.js/dist/chart.umd.min.js")
    assert response.status_code == 200


def test_the_usage_page_is_in_everyones_navigation(audrey, client_for):
    page = client_for(audrey).get("/").content.decode()
    assert 'href="/usage/"' in page


def test_an_admin_reports_usage_per_user_model_and_channel_with_csv(alice, bob, adam, client_for):
    use(alice, prompt=10, completion=20)
    use(alice, prompt=1, completion=2)
    use(bob, channel="api", prompt=100, completion=100)
    day = ledger.periods().day.isoformat()
    client = client_for(adam)
    response = client.get("/admin/accounts/dailyusage/report/", {"start": day, "end": day})
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [(row["user"], row["channel"], row["requests"], row["total_tokens"]) for row in rows] == [
        ("bob", "api", 1, 200),
        ("alice", "chat", 2, 33),
    ]
    assert response.context["total"] == sum(row.total_tokens for row in DailyUsage.objects.all())
    exported = client.get("/admin/accounts/dailyusage/report/", {"start": day, "end": day, "format": "csv"})
    assert exported["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.content.decode())))
    assert table[0][:3] == ["user", "model", "channel"]
    assert table[1][0] == "bob"
    assert table[1][-1] == "200"


@pytest.mark.parametrize(
    "query",
    [
        {"start": "2026-05-02", "end": "2026-05-01"},
        {"start": "yesterday", "end": "2026-05-01"},
        {"start": "2020-01-01", "end": "2026-01-01"},
    ],
)
def test_a_bad_report_range_is_refused_on_the_form(adam, client_for, query):
    response = client_for(adam).get("/admin/accounts/dailyusage/report/", query)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert response.context["rows"] == []


def test_members_cannot_see_the_report(alice, client_for):
    response = client_for(alice).get("/admin/accounts/dailyusage/report/", follow=True)
    assert response.status_code == 403
    assert "rows" not in (response.context or {})


# The management form of the admin's inline "groups with this policy".
NO_GROUPS = {"group_assignments-TOTAL_FORMS": "0", "group_assignments-INITIAL_FORMS": "0"}


def policy_form(**fields: Any) -> dict[str, Any]:
    return {"name": "members", "all_models": "on", **fields}


def test_the_policy_form_refuses_a_negative_value_with_the_field_named(adam, client_for):
    response = client_for(adam).post("/admin/accounts/policy/add/", {**policy_form(tokens_per_day="-1"), **NO_GROUPS})
    assert response.status_code == 200
    assert "tokens_per_day" in response.context["adminform"].form.errors
    assert not Policy.objects.exists()


def test_the_policy_form_offers_and_accepts_only_served_models(adam, client_for, engines):
    client = client_for(adam)
    refused = client.post("/admin/accounts/policy/add/", {"name": "p", "model_names": ["gpt-5"], **NO_GROUPS})
    [message] = refused.context["adminform"].form.errors["model_names"]
    assert message == "Unknown model gpt-5: the served models are large-model, small-model."
    saved = client.post("/admin/accounts/policy/add/", {"name": "p", "model_names": ["small-model"], **NO_GROUPS})
    assert saved.status_code == 302
    assert Policy.objects.get().model_names == ["small-model"]


def test_an_admin_gives_the_members_group_a_daily_budget_and_one_concurrent_answer(adam, alice, client_for):
    members = Group.objects.get(name=MEMBERS)
    form = {
        **policy_form(tokens_per_day="2000", concurrent_answers="1"),
        **NO_GROUPS,
        "group_assignments-TOTAL_FORMS": "1",
        "group_assignments-0-group": str(members.pk),
    }
    response = client_for(adam).post("/admin/accounts/policy/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    page = client_for(alice).get("/usage/").content.decode()
    assert "0 tokens of 2,000" in page
    assert "group policy of Members" in page


def test_an_adjustment_requires_a_reason_and_goes_through_the_ledger(alice, adam, client_for):
    use(alice, prompt=10, completion=90)
    client = client_for(adam)
    refused = client.post("/admin/accounts/adjustment/add/", {"user": alice.pk, "tokens": "-40", "reason": "  "})
    assert "reason" in refused.context["adminform"].form.errors
    assert not Adjustment.objects.exists()
    done = client.post("/admin/accounts/adjustment/add/", {"user": alice.pk, "tokens": "-40", "reason": "bad answer"})
    assert done.status_code == 302
    adjustment = Adjustment.objects.get()
    assert (adjustment.tokens, adjustment.made_by, adjustment.reason) == (-40, adam, "bad answer")
    assert UsageCounter.objects.get(user=alice).day_tokens == 60
    assert sum(row.total_tokens for row in DailyUsage.objects.filter(user=alice)) == 60
