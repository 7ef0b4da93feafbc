"""Verify the chain: every event's hash, its link to the one before, the head and checkpoints."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal.audit import chain
from portal.audit.models import GENESIS_HASH, ChainHead, Checkpoint, Event

CHUNK = 2000


@dataclass(frozen=True)
class Report:
    """The result of a verification: intact, or the first bad event and what is wrong with it."""

    ok: bool
    checked: int
    last_seq: int
    last_at: datetime | None
    bad_seq: int | None = None
    problem: str = ""

    def summary(self) -> str:
        """Return one line for people: "verified through event N ..." or "broken at event M: ..."."""
        if self.ok:
            if not self.last_seq:
                return "The audit trail is empty and intact."
            at = chain.timestamp(self.last_at) if self.last_at else "?"
            return f"Verified through event {self.last_seq} at {at}."
        return f"Broken at event {self.bad_seq}: {self.problem}"


def start_of_chain() -> tuple[int, str, str]:
    """Return (last seq before the first kept event, its hash, problem) from the newest checkpoint.

    The problem is empty when the checkpoint's signature is valid (or there is none).
    """
    checkpoint = Checkpoint.objects.order_by("-seq").first()
    if checkpoint is None:
        return 0, GENESIS_HASH, ""
    if not chain.signature_ok("checkpoint", checkpoint.seq, checkpoint.hash, checkpoint.signature):
        return checkpoint.seq, checkpoint.hash, f"the checkpoint through event {checkpoint.seq} has a bad signature"
    return checkpoint.seq, checkpoint.hash, ""


def verify_records(records: Iterable[dict[str, Any]], *, after_seq: int = 0, after_hash: str = GENESIS_HASH) -> Report:
    """Check a sequence of records (as :func:`chain.as_record` gives, plus ``hash``) in order.

    Returns the first problem: a gap (deleted events), a wrong ``prev_hash`` (reordered or
    inserted events), or a hash that does not match the content (a changed field).
    """
    previous_seq, previous_hash = after_seq, after_hash
    checked = 0
    last_at: datetime | None = None
    for record in records:
        seq = record["seq"]
        if seq != previous_seq + 1:
            if seq > previous_seq + 1:
                first = previous_seq + 1
                missing = f"event {first}" if seq == first + 1 else f"events {first}-{seq - 1}"
                problem = f"{missing} before it are missing (deleted)"
            else:
                problem = f"it comes after event {previous_seq} (out of order)"
            return Report(False, checked, previous_seq, last_at, seq, problem)
        if record["prev_hash"] != previous_hash:
            problem = f"its prev_hash does not match the hash of event {previous_seq} (inserted or reordered)"
            return Report(False, checked, previous_seq, last_at, seq, problem)
        try:
            expected = chain.record_hash(record)
        except (KeyError, TypeError, ValueError) as exc:
            return Report(False, checked, previous_seq, last_at, seq, f"its content cannot be serialized ({exc})")
        if record["hash"] != expected:
            return Report(False, checked, previous_seq, last_at, seq, "its hash does not match its content (changed)")
        previous_seq, previous_hash = seq, record["hash"]
        last_at = record.get("at")
        checked += 1
    return Report(True, checked, previous_seq, last_at)


def _stored_records(through: int | None) -> Iterator[dict[str, Any]]:
    events = Event.objects.order_by("seq")
    if through is not None:
        events = events.filter(seq__lte=through)
    for event in events.iterator(chunk_size=CHUNK):
        try:
            record = chain.as_record(event)
        except ValueError:
            # Data that is not JSON: a record the hash check will refuse.
            record = {"seq": event.seq, "prev_hash": event.prev_hash, "data": None}
        record["hash"] = event.hash
        record["at"] = event.created_at
        yield record


def verify_chain() -> Report:
    """Verify the whole stored trail from the newest checkpoint to the head.

    Never raises for tampering: the report names the first bad event and the problem. The
    head is read first: a writer commits its event and the head together, so events past
    the head read here are newer than this verification and are left for the next one.
    """
    head = ChainHead.objects.filter(pk=1).first()
    after_seq, after_hash, problem = start_of_chain()
    if problem:
        return Report(False, 0, after_seq, None, after_seq, problem)
    report = verify_records(_stored_records(head.seq if head else None), after_seq=after_seq, after_hash=after_hash)
    if not report.ok or head is None:
        return report
    if head.seq > report.last_seq:
        missing = head.seq if head.seq == report.last_seq + 1 else f"{report.last_seq + 1}-{head.seq}"
        return Report(False, report.checked, report.last_seq, report.last_at, report.last_seq + 1,
                      f"the last event(s) {missing} are missing (the chain head is at {head.seq})")  # fmt: skip
    if (
        head.seq == report.last_seq
        and head.seq
        and (
            head.hash != (Event.objects.filter(seq=head.seq).values_list("hash", flat=True).first() or "")
            or not chain.signature_ok("head", head.seq, head.hash, head.signature)
        )
    ):
        return Report(False, report.checked, report.last_seq, report.last_at, head.seq,
                      "the chain head's hash or signature does not match (the chain was rewritten)")  # fmt: skip
    return report
