"""/healthz and /readyz."""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer
from django.test import Client

from portal import health


def broken() -> dict[str, object]:
    raise ConnectionError('connection to server at "db.internal" failed for user "portal"')


def test_healthz_answers_anonymously_without_details(db):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def test_readyz_reports_each_part(db):
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert {"database", "cache", "channel_layer", "engines"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_tells_anonymous_callers_only_which_part_is_down(db, monkeypatch):
    monkeypatch.setattr(health, "check_database", broken)
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"] == {"ok": False}
    assert all(set(check) == {"ok"} for check in body["checks"].values()), "no engine names, no backends"
    assert b"db.internal" not in response.content


def test_readyz_tells_an_admin_the_details(adam, client_for, monkeypatch):
    monkeypatch.setattr(health, "check_database", broken)
    body = client_for(adam).get("/readyz").json()
    assert body["checks"]["database"]["error"].startswith("ConnectionError: connection to server at")
    assert "engines" in body["checks"]["engines"]


def test_a_member_gets_no_details_either(alice, client_for, monkeypatch):
    monkeypatch.setattr(health, "check_database", broken)
    body = client_for(alice).get("/readyz").json()
    assert body["checks"]["database"] == {"ok": False}


def test_a_failed_check_is_logged_with_its_details(db, monkeypatch, caplog):
    monkeypatch.setattr(health, "check_database", broken)
    with caplog.at_level(logging.WARNING, logger="portal.health"):
        Client().get("/readyz")
    assert "Readiness check database failed" in caplog.text
    assert "db.internal" in caplog.text


def test_a_channel_layer_that_never_answers_fails_the_check_in_time(db, monkeypatch):
    layer = get_channel_layer()

    async def never(channel: str) -> dict[str, object]:
        await asyncio.sleep(60)
        return {}

    monkeypatch.setattr(layer, "receive", never)
    monkeypatch.setattr(health, "CHANNEL_LAYER_TIMEOUT", 0.2)
    assert health.check_channel_layer() == {
        "ok": False,
        "backend": type(layer).__name__,
        "error": "no reply within 0.2 s",
    }
