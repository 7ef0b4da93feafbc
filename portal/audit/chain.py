"""The canonical serialization of an event, its hash, and the site-key signatures.

An event's hash is ``sha256(canonical(event))`` in lower-case hex, where ``canonical`` is
the UTF-8 encoding of a JSON object with exactly the keys of :data:`HASHED_FIELDS`, sorted,
no whitespace (``separators=(",", ":")``), non-ASCII characters kept as they are
(``ensure_ascii=False``). ``created_at`` is UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``data``
is the parsed JSON object of the event's details. docs/audit.md has a standalone verifier.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

FORMAT_VERSION = 1
HASHED_FIELDS = (
    "v",
    "seq",
    "created_at",
    "action",
    "actor_id",
    "actor_name",
    "ip",
    "target",
    "outcome",
    "request_id",
    "channel",
    "model",
    "engine",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "ttft_ms",
    "duration_ms",
    "data",
    "prev_hash",
)


def canonical_json(value: Any) -> str:
    """Return ``value`` as canonical JSON text (sorted keys, no whitespace, UTF-8 as is)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def timestamp(moment: datetime) -> str:
    """Return ``moment`` in UTC with microseconds and a ``Z`` (the form the hash covers)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_record(event: Any) -> dict[str, Any]:
    """Return the hashed fields of an :class:`~portal.audit.models.Event` (also the export's shape)."""
    return {
        "v": FORMAT_VERSION,
        "seq": event.seq,
        "created_at": timestamp(event.created_at),
        "action": event.action,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "ip": event.ip,
        "target": event.target,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "channel": event.channel,
        "model": event.model,
        "engine": event.engine,
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "ttft_ms": event.ttft_ms,
        "duration_ms": event.duration_ms,
        "data": json.loads(event.data),
        "prev_hash": event.prev_hash,
    }


def record_hash(record: Mapping[str, Any]) -> str:
    """Return the SHA-256 (hex) of the canonical serialization of a record's hashed fields."""
    payload = {name: record[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def event_hash(event: Any) -> str:
    """Return the hash ``event`` should have; raises ``ValueError`` when its data is not JSON."""
    return record_hash(as_record(event))


def sign(kind: str, seq: int, digest: str) -> str:
    """Return the HMAC-SHA256 (SECRET_KEY) of a chain position (``kind`` keeps uses apart)."""
    message = f"portal.audit.{kind}:{seq}:{digest}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def signature_ok(kind: str, seq: int, digest: str, signature: str) -> bool:
    """Return whether ``signature`` is :func:`sign` of this position (constant-time)."""
    return hmac.compare_digest(sign(kind, seq, digest), signature)
