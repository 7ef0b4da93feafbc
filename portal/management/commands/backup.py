"""`manage.py backup [PATH]`: copy the database while the portal runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from portal.backup import BackupError, backup_sqlite, pg_dump_command, resolve_target, run_pg_dump


class Command(BaseCommand):
    help = (
        "Back up the database: SQLite is copied consistently while the portal runs; for PostgreSQL the "
        "pg_dump command is printed (--run runs it)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", nargs="?", help="file or folder to write (default: DATA_DIR/backups/)")
        parser.add_argument("--run", action="store_true", help="PostgreSQL: run pg_dump instead of printing it")

    def handle(self, *args: Any, **options: Any) -> None:
        vendor = connection.vendor
        if options["path"]:
            folder_or_file = Path(options["path"]).resolve()
        else:
            folder_or_file = Path(settings.DATA_DIR) / "backups"
            folder_or_file.mkdir(mode=0o700, exist_ok=True)
        try:
            target = resolve_target(folder_or_file, vendor)
            if vendor == "sqlite":
                backup_sqlite(Path(settings.DATABASES["default"]["NAME"]), target)
                self.stdout.write(f"Backed up the database to {target}.")
            elif vendor == "postgresql":
                command = pg_dump_command(settings.DATABASES["default"], target)
                if not options["run"]:
                    self.stdout.write("Run this on a host with the PostgreSQL client (or add --run):")
                    self.stdout.write(f"  {command.display()}")
                    self.stdout.write(
                        f"Restore into an empty database with: pg_restore --no-owner --dbname=NAME {target}"
                    )
                    return
                run_pg_dump(command)
                self.stdout.write(f"Backed up the database to {target} (pg_dump custom format).")
            else:
                raise BackupError(f"Backups of {vendor} databases are not supported; use the database's own tools.")
        except BackupError as exc:
            raise CommandError(str(exc)) from None
