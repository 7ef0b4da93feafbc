"""Delete conversations older than the retention period (schedule it, e.g. daily from cron).

``manage.py audit retention`` runs this and every other retention; this command stays for
conversations alone. Either run is an audit event.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.conversations import purge_older_than
from portal.audit.retention import RETENTION_RUN
from portal.audit.trail import record


class Command(BaseCommand):
    help = "Delete conversations not updated for PORTAL_CHAT_RETENTION_DAYS days (0: keep everything)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="Override PORTAL_CHAT_RETENTION_DAYS for this run.")

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["days"] if options["days"] is not None else settings.CHAT_RETENTION_DAYS
        if days < 0:
            raise CommandError("--days must be 0 or more.")
        if days == 0:
            self.stdout.write("Retention is off (PORTAL_CHAT_RETENTION_DAYS=0): nothing deleted.")
            return
        deleted = purge_older_than(days)
        record(RETENTION_RUN, data={"deleted": {"conversations": deleted}, "days": days})
        self.stdout.write(f"Deleted {deleted} conversation(s) not updated for {days} day(s).")
