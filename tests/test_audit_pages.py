"""The auditor's pages: who may open them, filters, exports that match and verify, usage."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.http import StreamingHttpResponse
from django.test import Client

from portal.audit import chain, export
from portal.audit.models import Event
from portal.audit.trail import record
from portal.audit.verify import verify_records
from tests.audit_helpers import tamper

pytestmark = pytest.mark.django_db

PAGES = ["/audit/", "/audit/usage/", "/audit/export.csv", "/audit/export.jsonl"]


@pytest.fixture
def generations(alice: Any, bob: Any) -> list[Event]:
    made: list[Event] = []
    for user, model, outcome, tokens in [
        (alice, "smol", "complete", 10),
        (alice, "smol", "stopped", 4),
        (alice, "big", "complete", 7),
        (bob, "smol", "error", 0),
    ]:
        made.append(
            record("generation", actor=user, channel="chat", model=model, engine="e1", outcome=outcome,
                   prompt_tokens=3, completion_tokens=tokens, request_id=f"r{len(made)}")
        )  # fmt: skip
    made.append(record("engine.config_changed", target="e1", data={"before": {"port": 1}, "after": {"port": 2}}))
    return made


def _body(response: Any) -> bytes:
    # A streamed export is an async iterator (as Daphne serves it); iterating collects it here.
    return b"".join(response) if response.streaming else response.content


@pytest.mark.parametrize("page", PAGES)
def test_members_are_refused_every_audit_page(page: str, alice: Any, client_for: Callable[[Any], Client]) -> None:
    assert client_for(alice).get(page).status_code == 403


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_log_in(page: str) -> None:
    response = Client().get(page)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("persona", ["audrey", "adam"])
def test_auditors_and_admins_open_every_audit_page(
    page: str, persona: str, request: pytest.FixtureRequest, client_for: Callable[[Any], Client], generations: Any
) -> None:
    user = request.getfixturevalue(persona)
    response = client_for(user).get(page)
    assert response.status_code == 200
    _body(response)


@pytest.mark.parametrize("persona", ["audrey", "adam"])
def test_nobody_can_post_to_the_audit_pages(
    persona: str, request: pytest.FixtureRequest, client_for: Callable[[Any], Client]
) -> None:
    client = client_for(request.getfixturevalue(persona))
    assert client.post("/audit/").status_code == 405


@pytest.mark.parametrize("persona", ["audrey", "adam"])
def test_nobody_can_change_or_delete_an_event_in_django_admin(
    persona: str, request: pytest.FixtureRequest, client_for: Callable[[Any], Client], generations: Any
) -> None:
    client = client_for(request.getfixturevalue(persona))
    seq = generations[0].seq
    change = client.post(f"/admin/audit/event/{seq}/change/", {"target": "changed"})
    delete = client.post(f"/admin/audit/event/{seq}/delete/", {"post": "yes"})
    assert change.status_code in (302, 403)
    assert delete.status_code in (302, 403)
    assert Event.objects.get(seq=seq).target == generations[0].target


def test_the_auditor_nav_item_shows_for_auditors_only(
    alice: Any, audrey: Any, client_for: Callable[[Any], Client]
) -> None:
    assert 'data-nav="audit:events"' in client_for(audrey).get("/").content.decode()
    assert 'data-nav="audit:events"' not in client_for(alice).get("/").content.decode()


def test_the_list_filters_by_user_model_and_outcome(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    page = client_for(audrey).get("/audit/", {"user": "alice", "model": "smol", "outcome": "stopped"})
    listed = [event.seq for event in page.context["page"]]
    assert listed == [generations[1].seq]


def test_the_banner_says_how_far_the_chain_verifies(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    cache.clear()
    client = client_for(audrey)  # logging in is an event too
    last = Event.objects.latest("seq")
    body = client.get("/audit/").content.decode()
    assert f"Verified through event {last.seq} at {chain.timestamp(last.created_at)}" in body
    tamper("UPDATE audit_event SET outcome = 'complete' WHERE seq = %s", [generations[1].seq])
    cache.clear()
    body = client.get("/audit/").content.decode()
    assert f"Broken at event {generations[1].seq}" in body


@pytest.mark.parametrize(
    "query", [{"since": "not a date"}, {"since": "2026-02-01", "until": "2026-01-01"}, {"user": "x" * 500}]
)
def test_bad_filters_are_a_clear_400_everywhere(
    query: dict[str, str], audrey: Any, client_for: Callable[[Any], Client]
) -> None:
    client = client_for(audrey)
    for page in PAGES:
        assert client.get(page, query).status_code == 400, page
    assert not Event.objects.filter(action="audit.export").exists()


def test_an_unknown_export_format_is_a_404(audrey: Any, client_for: Callable[[Any], Client]) -> None:
    assert client_for(audrey).get("/audit/export.xml").status_code == 404


def test_a_jsonl_export_matches_its_filters_and_each_line_verifies(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    response = client_for(audrey).get("/audit/export.jsonl", {"user": "alice", "action": "generation"})
    # Asynchronous, so that Daphne sends it page by page instead of collecting it first.
    assert isinstance(response, StreamingHttpResponse)
    assert response.is_async
    lines = [json.loads(line) for line in _body(response).decode().splitlines()]
    assert [line["seq"] for line in lines] == [event.seq for event in generations[:3]]
    assert all(line["actor_name"] == "alice" and line["action"] == "generation" for line in lines)
    assert all(chain.record_hash(line) == line["hash"] for line in lines)
    exported = Event.objects.get(action="audit.export")
    assert exported.actor_name == "audrey"
    assert exported.details["filters"] == {"user": "alice", "action": "generation"}


def test_an_unfiltered_export_verifies_as_a_chain_from_outside(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    body = _body(client_for(audrey).get("/audit/export.jsonl")).decode()
    lines = [json.loads(line) for line in body.splitlines()]
    report = verify_records(lines)
    assert report.ok, report.summary()
    # Everything up to the export's own event, which comes after it.
    assert report.last_seq == Event.objects.get(action="audit.export").seq - 1


def test_a_csv_export_has_every_hashed_column(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    rows = list(csv.DictReader(io.StringIO(_body(client_for(audrey).get("/audit/export.csv")).decode())))
    assert len(rows) == Event.objects.filter(seq__lt=Event.objects.get(action="audit.export").seq).count()
    assert list(rows[0]) == export.COLUMNS
    (config,) = [row for row in rows if row["action"] == "engine.config_changed"]
    assert json.loads(config["data"]) == {"before": {"port": 1}, "after": {"port": 2}}


def test_an_export_is_read_page_by_page(monkeypatch: pytest.MonkeyPatch, generations: Any) -> None:
    monkeypatch.setattr(export, "PAGE", 2)
    pages: list[int] = []
    original = export._page

    def spy(events: Any, after: int) -> list[Event]:
        page = original(events, after)
        pages.append(len(page))
        return page

    monkeypatch.setattr(export, "_page", spy)

    async def collect() -> list[bytes]:
        return [line async for line in export.stream(Event.objects.all(), "jsonl")]

    lines = async_to_sync(collect)()
    assert len(lines) == Event.objects.count() == sum(pages)
    assert max(pages) == 2
    assert pages[-1] == 0


def test_usage_sums_tokens_per_user_and_model(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    rows = client_for(audrey).get("/audit/usage/").context["rows"]
    by_key = {(row["actor_name"], row["model"]): row for row in rows}
    assert by_key[("alice", "smol")]["requests"] == 2
    assert by_key[("alice", "smol")]["completion_tokens"] == 14
    assert by_key[("alice", "smol")]["not_complete"] == 1
    assert by_key[("bob", "smol")]["not_complete"] == 1
    assert set(by_key) == {("alice", "smol"), ("alice", "big"), ("bob", "smol")}


def test_an_event_page_shows_whether_its_hash_matches(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any
) -> None:
    response = client_for(audrey).get(f"/audit/events/{generations[0].seq}/")
    assert response.context["intact"] is True
    assert client_for(audrey).get("/audit/events/999999/").status_code == 404
    assert client_for(audrey).get(f"/audit/events/{10**30}/").status_code == 404


def _documented_verifier(tmp_path: Path) -> Path:
    text = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    script = re.search(r"```python\n(#!/usr/bin/env python3\n.*?)```", text, re.S)
    assert script, "docs/audit.md lost its standalone verifier"
    path = tmp_path / "verify_audit.py"
    path.write_text(script.group(1))
    return path


def test_the_standalone_verifier_of_the_docs_accepts_an_export_and_names_a_changed_event(
    audrey: Any, client_for: Callable[[Any], Client], generations: Any, tmp_path: Path
) -> None:
    verifier = _documented_verifier(tmp_path)
    export_file = tmp_path / "export.jsonl"
    export_file.write_bytes(_body(client_for(audrey).get("/audit/export.jsonl")))
    ok = subprocess.run([sys.executable, verifier, export_file], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "verified" in ok.stdout
    lines = export_file.read_text().splitlines()
    changed = json.loads(lines[2])
    changed["outcome"] = "complete" if changed["outcome"] != "complete" else "error"
    lines[2] = json.dumps(changed)
    export_file.write_text("\n".join(lines) + "\n")
    bad = subprocess.run([sys.executable, verifier, export_file], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"event {changed['seq']}: hash does not match" in bad.stderr


def test_metrics_carry_the_chains_state(adam: Any, client_for: Callable[[Any], Client], generations: Any) -> None:
    from portal import metrics
    from portal.audit.queries import chain_metrics

    metrics.register_audit_state(chain_metrics)  # as AuditConfig.ready() did (other tests may swap it)
    cache.clear()
    body = client_for(adam).get("/metrics").content.decode()
    assert "portal_audit_chain_intact 1.0" in body
    assert f"portal_audit_chain_events {float(Event.objects.latest('seq').seq)}" in body
