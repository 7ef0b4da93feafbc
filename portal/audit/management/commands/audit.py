"""``manage.py audit verify | prune --before DATE | retention``: check and prune the audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit.retention import PruneRefused, prune, run_retention
from portal.audit.verify import verify_chain


def _day(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError:
        raise CommandError(f"--before must be a date as YYYY-MM-DD, not {value!r}.") from None


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain, prune events before a date, or run every retention."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("verify", help="Exit 0 when the chain is intact; else name the first bad event.")
        prune_parser = sub.add_parser("prune", help="Delete events before DATE (UTC) behind a signed checkpoint.")
        prune_parser.add_argument("--before", required=True, help="YYYY-MM-DD; events before this day go.")
        sub.add_parser("retention", help="Run every retention setting (conversations, audit events).")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "verify":
            report = verify_chain()
            if not report.ok:
                raise CommandError(report.summary(), returncode=1)
            self.stdout.write(f"{report.summary()} ({report.checked} events checked)")
            return
        try:
            if action == "prune":
                result = prune(_day(options["before"]))
                self.stdout.write(f"Pruned {result.deleted} event(s); the trail now starts after a signed checkpoint.")
            else:
                results = run_retention()
                parts = [f"{name}: {'kept (retention off)' if n is None else n}" for name, n in results.items()]
                self.stdout.write("Retention: " + ", ".join(parts))
        except PruneRefused as exc:
            raise CommandError(f"Nothing pruned: {exc}", returncode=2) from exc
