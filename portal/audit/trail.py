"""Write audit events: :func:`record` appends one event to the hash chain.

Appending takes the chain head (one row) with ``SELECT ... FOR UPDATE``, inserts the event
and moves the head, inside the caller's transaction. The head stays locked until that
transaction ends, so call :func:`record` last in a short transaction (lock order:
conversation, then quota ledger rows, then the audit chain head) and never around a slow
call. If the caller's transaction rolls back, the event goes with it; if the event cannot be
written, the exception rolls back the caller's transaction too.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import chain
from portal.audit.models import GENESIS_HASH, ChainHead, Event, EventContent
from portal.audit.redaction import redact
from portal.audit.request_context import current_request, current_request_id

log = logging.getLogger(__name__)
HEAD_ID = 1


def _locked_head() -> ChainHead:
    try:
        return ChainHead.objects.select_for_update().get(pk=HEAD_ID)
    except ChainHead.DoesNotExist:
        pass
    # The migration creates the head; it is missing only after the tables were emptied
    # (test flushes) or by tampering, which the head's signature check cannot then see.
    last = Event.objects.order_by("-seq").first()
    log.warning("audit chain head missing; recreating it at event %s", last.seq if last else 0)
    try:
        with transaction.atomic():
            ChainHead.objects.create(
                pk=HEAD_ID,
                seq=last.seq if last else 0,
                hash=last.hash if last else GENESIS_HASH,
                signature=chain.sign("head", last.seq, last.hash) if last else "",
            )
    except IntegrityError:
        pass  # another writer created it first
    return ChainHead.objects.select_for_update().get(pk=HEAD_ID)


def _append(event: Event, signature: str) -> None:
    """Insert ``event`` and move the head to it (the head is locked by this transaction)."""
    if connection.vendor != "postgresql":
        event.save()
        ChainHead.objects.filter(pk=HEAD_ID).update(seq=event.seq, hash=event.hash, signature=signature)
        return
    # One round trip instead of two while every other writer waits for the head: the same
    # INSERT as Event.save() and the same UPDATE, as one statement.
    fields = list(Event._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    values = [field.get_db_prep_save(field.pre_save(event, add=True), connection) for field in fields]
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"WITH appended AS (INSERT INTO audit_event ({columns}) VALUES ({placeholders}) RETURNING seq, hash) "  # noqa: S608 - column names from the model
        "UPDATE audit_chainhead SET seq = appended.seq, hash = appended.hash, signature = %s "
        "FROM appended WHERE audit_chainhead.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, signature, HEAD_ID])
    event._state.adding = False
    event._state.db = connection.alias


def _redacted(content: dict[str, str] | None) -> dict[str, str] | None:
    if not content or settings.AUDIT_CONTENT_DAYS <= 0:
        return None
    return {name: redact(str(text)) for name, text in content.items()}


def _text(value: Any, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def record(
    action: str,
    *,
    actor: Any = None,
    actor_name: str | None = None,
    ip: str | None = None,
    target: str = "",
    outcome: str = "ok",
    request_id: str | None = None,
    channel: str = "",
    model: str = "",
    engine: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    ttft_ms: int | None = None,
    duration_ms: int | None = None,
    data: dict[str, Any] | None = None,
    content: dict[str, str] | None = None,
) -> Event:
    """Append one event to the trail and return it.

    ``actor`` is a user (or None for the system); its name is snapshotted unless
    ``actor_name`` is given. ``request_id`` defaults to the current request's id. ``data``
    must be a JSON-serializable dict of details (before/after values, a reason); anything
    else raises ``TypeError`` or ``ValueError`` before anything is written. ``content``
    (texts by name, e.g. prompt and answer) is kept, redacted, only while
    ``PORTAL_AUDIT_CONTENT_DAYS`` is set, and never in the hashed record. Runs in the
    caller's transaction (its own when there is none, and no savepoint): a failure raises,
    and the caller's transaction can then only roll back.
    """
    if not action:
        raise ValueError("an audit event needs an action")
    if data is not None and not isinstance(data, dict):
        raise TypeError("audit event data must be a dict")
    kept = _redacted(content)
    if kept is not None:
        data = {**(data or {}), "content_sha256": hashlib.sha256(chain.canonical_json(kept).encode()).hexdigest()}
    data_text = chain.canonical_json(data or {})
    user = actor if getattr(actor, "is_authenticated", False) else None
    event = Event(
        action=action[:64],
        actor=user,
        actor_name=actor_name[:150] if actor_name is not None else (user.get_username()[:150] if user else ""),
        ip=_text(ip, 45),
        target=_text(target, 300),
        outcome=_text(outcome, 32),
        request_id=_text(request_id if request_id is not None else current_request_id(), 64),
        channel=_text(channel, 32),
        model=_text(model, 200),
        engine=_text(engine, 64),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        data=data_text,
    )
    # No savepoint: a failed append must fail the caller's whole transaction anyway, and
    # two round trips fewer matter while the head is locked. Only what depends on the
    # chain's position is done under the lock (the time, so that it grows with seq).
    with transaction.atomic(savepoint=False):
        if not settings.AUDIT_SYNCHRONOUS_COMMIT and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        head = _locked_head()
        event.seq = head.seq + 1
        event.created_at = timezone.now()
        event.prev_hash = head.hash
        event.hash = chain.event_hash(event)
        _append(event, chain.sign("head", event.seq, event.hash))
        if kept is not None:
            EventContent.objects.create(event_seq=event.seq, created_at=event.created_at, texts=kept)
    return event


def client_ip(request: HttpRequest) -> str:
    """Return the client's address as the server saw it (Daphne applies trusted proxy headers)."""
    return str(request.META.get("REMOTE_ADDR") or "")


def record_request(request: HttpRequest, action: str, **fields: Any) -> Event:
    """Record ``action`` by the request's user from the request's IP (see :func:`record`)."""
    fields.setdefault("actor", getattr(request, "user", None))
    fields.setdefault("ip", client_ip(request))
    return record(action, **fields)


def record_in_context(action: str, **fields: Any) -> Event:
    """Record ``action``; actor and IP come from the current HTTP request when there is one.

    For signal receivers that do not get the request (a role change made in Django admin,
    a user deactivated). Outside a request the actor is the system (None).
    """
    request = current_request()
    if request is not None:
        return record_request(request, action, **fields)
    return record(action, **fields)
