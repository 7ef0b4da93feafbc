"""django-ratelimit on the portal's own HTTP views (accounts/ratelimits.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def limit_of_three(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.HTTP_RATE_LIMIT = "3/m"
    # A group of its own: counts left in the cache by other tests do not count here.
    monkeypatch.setattr("accounts.ratelimits.GROUP", f"test-{uuid.uuid4().hex}")


@pytest.mark.usefixtures("limit_of_three")
def test_a_member_over_the_rate_gets_429_with_retry_after_and_others_do_not(alice, bob, client_for):
    client = client_for(alice)
    assert [client.get("/chat/").status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/chat/api/models/", HTTP_ACCEPT="application/json")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limited"
    assert client_for(bob).get("/chat/").status_code == 200


@pytest.mark.usefixtures("limit_of_three")
def test_anonymous_requests_are_limited_per_ip_address():
    here, there = Client(REMOTE_ADDR="10.0.0.1"), Client(REMOTE_ADDR="10.0.0.2")
    assert [here.get("/chat/").status_code for _ in range(3)] == [302, 302, 302]
    assert here.get("/chat/").status_code == 429
    assert there.get("/chat/").status_code == 302


@pytest.mark.usefixtures("limit_of_three")
def test_allauths_login_and_the_health_probes_keep_their_own_limits():
    client = Client(REMOTE_ADDR="10.0.0.3")
    assert {client.get("/accounts/login/").status_code for _ in range(5)} == {200}
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}
