"""Structured log lines: one JSON object per record, with the request id, redacted.

``LOGGING`` in settings uses :class:`JsonFormatter` unless ``PORTAL_LOG_FORMAT=plain``. The
message and any exception text pass through :func:`portal.audit.redaction.redact`, so an
e-mail address, a key or a token that reaches a log call is replaced. Code must still never
log prompt or answer text: redaction is the safety net, not the permission.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from portal.audit.redaction import redact
from portal.audit.request_context import current_request_id


class JsonFormatter(logging.Formatter):
    """Format a record as ``{"time", "level", "logger", "message", "request_id", "exception"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", "") or current_request_id()
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)
