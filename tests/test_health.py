"""/healthz and /readyz."""

from __future__ import annotations

from django.test import Client

from portal import health


def test_healthz_answers_anonymously_without_details(db):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def test_readyz_reports_each_part(db):
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert {"database", "cache", "channel_layer"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_when_a_part_fails(db, monkeypatch):
    def broken() -> dict[str, object]:
        raise ConnectionError("cache is down")

    monkeypatch.setattr(health, "check_cache", broken)
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["cache"] == {"ok": False, "error": "ConnectionError: cache is down"}
