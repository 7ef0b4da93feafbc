"""Retention: prune old audit events behind a signed checkpoint, and run every app's retention.

Pruning is the one path that deletes events. It deletes a prefix of the chain (every event up
to the last one older than the cut-off), first writes a :class:`Checkpoint` holding the last
pruned event's seq and hash signed with SECRET_KEY (so what remains still verifies from it),
and records an ``audit.prune`` event, all in one transaction. On PostgreSQL the append-only
trigger lets a DELETE through only while the transaction-local setting ``portal.audit_prune``
is ``on``, which only :func:`prune` sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from portal.audit import chain, trail
from portal.audit.models import Checkpoint, Event, EventContent
from portal.audit.verify import verify_chain

RETENTION_RUN = "retention.run"
PRUNE = "audit.prune"


class PruneRefused(Exception):
    """The trail does not verify: pruning would destroy the evidence, so nothing was deleted."""


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    through_seq: int | None


def prune(before: datetime, *, actor: Any = None, ip: str | None = None) -> PruneResult:
    """Delete the events older than ``before`` behind a signed checkpoint; record the run.

    Raises :class:`PruneRefused` when the trail does not verify (nothing is deleted then).
    """
    report = verify_chain()
    if not report.ok:
        raise PruneRefused(report.summary())
    with transaction.atomic():
        trail._locked_head()  # writers wait while the prefix goes; lock order: the head is last
        last = (
            Event.objects.filter(created_at__lt=before, seq__lte=report.last_seq)
            .order_by("-seq")
            .only("seq", "hash")
            .first()
        )
        deleted = 0
        if last is not None:
            Checkpoint.objects.create(
                created_at=timezone.now(),
                seq=last.seq,
                hash=last.hash,
                signature=chain.sign("checkpoint", last.seq, last.hash),
            )
            deleted = _delete_through(last.seq)
        trail.record(
            PRUNE,
            actor=actor,
            ip=ip,
            target=f"events through {last.seq}" if last else "no events",
            data={"before": chain.timestamp(before), "deleted": deleted, "through_seq": last.seq if last else None},
        )
    return PruneResult(deleted, last.seq if last else None)


def _delete_through(seq: int) -> int:
    table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('portal.audit_prune', 'on', true)")
        cursor.execute(f"DELETE FROM {table} WHERE seq <= %s", [seq])  # noqa: S608 - a quoted table name
        deleted = cursor.rowcount
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('portal.audit_prune', 'off', true)")
    return int(deleted)


# --- every app's retention ----------------------------------------------------------------


@dataclass(frozen=True)
class RetentionTask:
    """What an app deletes after a number of days (0 days: keep everything)."""

    name: str
    days: Callable[[], int]
    purge: Callable[[int], int]


_tasks: dict[str, RetentionTask] = {}


def register_task(name: str, days: Callable[[], int], purge: Callable[[int], int]) -> None:
    """Add an app's retention (called from its ``ready()``); ``purge(days)`` returns how many it deleted.

    SEAM(registry): moves to ``portal.registry`` once the structure issue lands.
    """
    _tasks[name] = RetentionTask(name, days, purge)


def run_retention(*, actor: Any = None) -> dict[str, int | None]:
    """Run every registered retention task and prune the trail; record one ``retention.run`` event.

    Returns what each part deleted (None where retention is off). Raises
    :class:`PruneRefused` when the trail does not verify (the apps' purges have run by then).
    """
    results: dict[str, int | None] = {}
    for task in sorted(_tasks.values(), key=lambda item: item.name):
        days = task.days()
        results[task.name] = task.purge(days) if days > 0 else None
    audit_days: int = settings.AUDIT_RETENTION_DAYS
    if audit_days > 0:
        results["audit_events"] = prune(timezone.now() - timedelta(days=audit_days), actor=actor).deleted
    else:
        results["audit_events"] = None
    trail.record(RETENTION_RUN, actor=actor, data={"deleted": results})
    return results


def purge_content(days: int) -> int:
    """Delete the redacted texts kept with events older than ``days`` days; return how many."""
    deleted, _ = EventContent.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
