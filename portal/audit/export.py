"""CSV and JSONL exports of filtered events, streamed page by page.

Each page of :data:`PAGE` events is read by sequence number (keyset, not OFFSET) in a worker
thread and sent before the next is read, so an export of any size holds one page in memory.
The generator is asynchronous on purpose: under ASGI, Django collects a *synchronous*
iterator into a list before sending it, which would load the whole export.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from portal.audit import chain
from portal.audit.models import Event

PAGE = 2000
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
COLUMNS = [*chain.HASHED_FIELDS, "hash"]


def export_record(event: Event) -> dict[str, Any]:
    """Return an event as one export line: the hashed fields plus its ``hash``."""
    return dict(chain.as_record(event), hash=event.hash)


def _page(events: QuerySet[Event], after: int) -> list[Event]:
    return list(events.filter(seq__gt=after).order_by("seq")[:PAGE])


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode("utf-8")


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict):
        return chain.canonical_json(value)
    return "" if value is None else value


async def stream(events: QuerySet[Event], fmt: str) -> AsyncIterator[bytes]:
    """Yield the export of ``events`` in ``fmt`` ("csv" or "jsonl"), oldest first."""
    if fmt == "csv":
        yield _csv_line(COLUMNS)
    after = 0
    while True:
        page = await sync_to_async(_page)(events, after)
        if not page:
            return
        for event in page:
            record = export_record(event)
            if fmt == "csv":
                yield _csv_line([_csv_value(record[name]) for name in COLUMNS])
            else:
                yield (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        after = page[-1].seq
