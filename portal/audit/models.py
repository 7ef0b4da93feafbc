"""The audit trail's tables: append-only events, the chain head and signed prune checkpoints.

Nothing in the application updates or deletes an :class:`Event`: ``save()`` of an existing
event, ``delete()`` and queryset ``update()``/``delete()`` raise :class:`ImmutableEvent`.
On PostgreSQL a trigger refuses UPDATE and DELETE as well (migration 0002); the only delete
is the retention prune in :mod:`portal.audit.retention`. See docs/audit.md.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64


class ImmutableEvent(Exception):
    """Raised on any attempt to change or delete an audit event through the ORM."""


class EventQuerySet(models.QuerySet["Event"]):
    def update(self, **kwargs: Any) -> int:
        raise ImmutableEvent("audit events cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ImmutableEvent("audit events cannot be deleted (retention: manage.py audit prune)")

    def bulk_create(self, *args: Any, **kwargs: Any) -> list[Event]:
        raise ImmutableEvent("audit events are appended one at a time by portal.audit.trail.record()")


class Event(models.Model):
    """One thing that happened, chained to the event before it by ``prev_hash``.

    ``hash`` is the SHA-256 of the canonical serialization (:mod:`portal.audit.chain`) of
    every other column. ``data`` holds that canonical JSON text of the event's details
    (before/after values, reasons), so the database cannot reformat it.
    """

    seq = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64)
    # No database constraint and no cascade: deleting a user must not touch the trail.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    target = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=32, default="ok")
    request_id = models.CharField(max_length=64, blank=True)
    channel = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=200, blank=True)
    engine = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    reasoning_tokens = models.IntegerField(null=True, blank=True)
    ttft_ms = models.IntegerField(null=True, blank=True)
    duration_ms = models.IntegerField(null=True, blank=True)
    data = models.TextField(default="{}")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        default_permissions = ("view",)
        # Few indexes on purpose: each one is work while the chain head is locked. The
        # auditor's filters all come with a date range (or page by seq).
        indexes = [
            models.Index(fields=["actor", "created_at"], name="audit_event_actor_time"),
            models.Index(fields=["action", "created_at"], name="audit_event_action_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableEvent(f"audit event {self.seq} cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableEvent(f"audit event {self.seq} cannot be deleted")

    @property
    def details(self) -> dict[str, Any]:
        """The event's ``data`` as a dict (empty when the stored text is not a JSON object)."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class ChainHead(models.Model):
    """The single row that writers lock to append: the last event's sequence number and hash.

    ``signature`` is an HMAC (SECRET_KEY) of ``seq:hash``, so rewriting the chain's tail
    with recomputed hashes needs the site's key as well as the database.
    """

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)
    signature = models.CharField(max_length=64, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"chain head at {self.seq}"


class Checkpoint(models.Model):
    """Where a prune cut the chain: the last pruned event's seq and hash, signed with SECRET_KEY."""

    created_at = models.DateTimeField()
    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        default_permissions = ()

    def __str__(self) -> str:
        return f"checkpoint through {self.seq}"


class EventContent(models.Model):
    """Redacted text kept with an event for ``PORTAL_AUDIT_CONTENT_DAYS`` days (off by default).

    Not part of the hashed record, so retention can delete it without breaking the chain;
    the event's ``data.content_sha256`` is the SHA-256 of ``canonical_json(texts)``, so
    text that is still here can be checked against the chain.
    """

    event_seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    texts = models.JSONField(default=dict)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"content of event {self.event_seq}"
