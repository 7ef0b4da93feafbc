"""The audit trail is append-only and hash-chained: tampering by raw SQL makes verify name the event."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from portal.audit import chain
from portal.audit.models import ChainHead, Event, ImmutableEvent
from portal.audit.trail import record
from tests.audit_helpers import run_verify, some_events, tamper

pytestmark = pytest.mark.django_db


def test_an_untouched_trail_verifies_and_says_how_far() -> None:
    some_events(5)
    code, message = run_verify()
    assert code == 0
    assert "Verified through event" in message
    assert "events checked" in message


def test_each_event_links_to_the_one_before() -> None:
    first, second = some_events(2)
    assert first.prev_hash == "0" * 64
    assert second.prev_hash == first.hash
    assert second.seq == first.seq + 1
    head = ChainHead.objects.get()
    assert (head.seq, head.hash) == (second.seq, second.hash)


def test_an_event_snapshots_the_actor_name(alice: Any) -> None:
    event = record("test.event", actor=alice, ip="203.0.113.9", target="x")
    alice.username = "alice2"
    alice.save()
    event = Event.objects.get(seq=event.seq)
    assert (event.actor_id, event.actor_name, event.ip) == (alice.pk, "alice", "203.0.113.9")


def test_a_changed_field_makes_verify_fail_naming_the_event() -> None:
    events = some_events(5)
    tamper("UPDATE audit_event SET completion_tokens = 7 WHERE seq = %s", [events[2].seq])
    code, message = run_verify()
    assert code == 1
    assert f"event {events[2].seq}" in message
    assert "hash does not match its content" in message


def test_a_deleted_row_makes_verify_fail_naming_the_gap() -> None:
    events = some_events(5)
    tamper("DELETE FROM audit_event WHERE seq = %s", [events[2].seq])
    code, message = run_verify()
    assert code == 1
    assert f"Broken at event {events[3].seq}" in message
    assert f"event {events[2].seq} before it" in message


def test_a_deleted_last_row_is_caught_by_the_chain_head() -> None:
    events = some_events(3)
    tamper("DELETE FROM audit_event WHERE seq = %s", [events[-1].seq])
    code, message = run_verify()
    assert code == 1
    assert f"Broken at event {events[-1].seq}" in message


def _forged(seq: int, prev_hash: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1, "seq": seq, "created_at": "2026-01-01T00:00:00.000000Z", "action": "auth.login",
        "actor_id": None, "actor_name": "mallory", "ip": "", "target": "", "outcome": "ok", "request_id": "",
        "channel": "", "model": "", "engine": "", "prompt_tokens": None, "completion_tokens": None,
        "reasoning_tokens": None, "ttft_ms": None, "duration_ms": None, "data": {}, "prev_hash": prev_hash,
    }  # fmt: skip
    fields["hash"] = chain.record_hash(fields)
    return fields


def test_a_row_inserted_in_the_middle_makes_verify_fail_naming_the_event() -> None:
    events = some_events(5)
    # Make room at seq 3 (two steps: unique seq), then insert a well-formed forged event there.
    tamper("UPDATE audit_event SET seq = -(seq + 1) WHERE seq >= %s", [events[2].seq])
    tamper("UPDATE audit_event SET seq = -seq WHERE seq < 0")
    forged = _forged(events[2].seq, events[1].hash)
    tamper(
        "INSERT INTO audit_event (seq, created_at, action, actor_name, ip, target, outcome, request_id, channel,"
        " model, engine, data, prev_hash, hash) VALUES (%s, %s, %s, %s, '', '', 'ok', '', '', '', '', '{}', %s, %s)",
        [forged["seq"], "2026-01-01 00:00:00+00:00", "auth.login", "mallory", forged["prev_hash"], forged["hash"]],
    )
    code, message = run_verify()
    assert code == 1
    # The forged event itself is consistent; the one after it no longer links to it.
    assert f"Broken at event {events[2].seq + 1}" in message
    assert "prev_hash does not match" in message


def test_a_reordered_pair_makes_verify_fail_naming_the_event() -> None:
    events = some_events(5)
    a, b = events[1].seq, events[2].seq
    tamper("UPDATE audit_event SET seq = -1 WHERE seq = %s", [a])
    tamper("UPDATE audit_event SET seq = %s WHERE seq = %s", [a, b])
    tamper("UPDATE audit_event SET seq = %s WHERE seq = -1", [b])
    code, message = run_verify()
    assert code == 1
    assert f"Broken at event {a}" in message


def test_a_chain_rewritten_with_recomputed_hashes_is_caught_by_the_signed_head() -> None:
    events = some_events(3)
    # Someone with the database but not the site key changes the last event and fixes its hash.
    last = events[-1]
    record_ = chain.as_record(Event.objects.get(seq=last.seq))
    record_["target"] = "something else"
    new_hash = chain.record_hash(record_)
    tamper("UPDATE audit_event SET target = %s, hash = %s WHERE seq = %s", ["something else", new_hash, last.seq])
    tamper("UPDATE audit_chainhead SET hash = %s", [new_hash])
    code, message = run_verify()
    assert code == 1
    assert f"Broken at event {last.seq}" in message
    assert "signature" in message


def test_the_orm_refuses_to_change_or_delete_an_event() -> None:
    (event,) = some_events(1)
    event.target = "changed"
    with pytest.raises(ImmutableEvent):
        event.save()
    with pytest.raises(ImmutableEvent):
        event.delete()
    with pytest.raises(ImmutableEvent):
        Event.objects.filter(seq=event.seq).update(target="changed")
    with pytest.raises(ImmutableEvent):
        Event.objects.all().delete()
    with pytest.raises(ImmutableEvent):
        Event.objects.bulk_create([Event(seq=99, action="forged")])
    assert Event.objects.get(seq=event.seq).target == "thing 0"


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
@pytest.mark.parametrize("sql", ["UPDATE audit_event SET target = 'x'", "DELETE FROM audit_event"])
def test_postgresql_refuses_update_and_delete_of_events(sql: str) -> None:
    some_events(2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert Event.objects.count() == 2


def test_an_event_written_in_a_failed_transaction_is_gone_with_it() -> None:
    some_events(1)

    def settle() -> None:
        with transaction.atomic():
            record("test.event", target="rolled back")
            raise RuntimeError("the settlement failed")

    with pytest.raises(RuntimeError):
        settle()
    assert not Event.objects.filter(target="rolled back").exists()
    assert ChainHead.objects.get().seq == 1
    assert run_verify()[0] == 0


def test_data_that_is_not_json_is_refused_before_anything_is_written() -> None:
    with pytest.raises(TypeError):
        record("test.event", data={"when": object()})
    with pytest.raises(TypeError):
        record("test.event", data=["not", "a", "dict"])  # type: ignore[arg-type]
    assert not Event.objects.exists()
