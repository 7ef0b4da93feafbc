"""Helpers of the audit tests: raw SQL the way someone with database access would tamper."""

from __future__ import annotations

import io
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from portal.audit.trail import record


def tamper(sql: str, params: list[Any] | None = None) -> None:
    """Run raw SQL on the trail; on PostgreSQL as a superuser who switches the triggers off."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params or [])
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")


def run_verify() -> tuple[int, str]:
    """Run ``manage.py audit verify``; return its exit code and its message."""
    out = io.StringIO()
    try:
        call_command("audit", "verify", stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def some_events(count: int) -> list[Any]:
    return [record("test.event", target=f"thing {index}", data={"index": index}) for index in range(count)]
