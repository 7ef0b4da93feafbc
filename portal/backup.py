"""Database backups: a consistent SQLite copy through the online backup API, or pg_dump for PostgreSQL.

Used by ``manage.py backup``. The SQLite copy is taken while the portal keeps running (the
backup API copies the pages inside one read transaction, so the copy is one consistent state)
into a temporary file next to the target, checked, and only then renamed into place: a
failed backup never leaves a half-written file under the target's name.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.utils import timezone

# The whole database in one step, i.e. inside one read transaction. With the portal's WAL
# journal, writers carry on meanwhile; copying in small steps instead would restart the copy
# every time another process writes, and a busy portal could keep it from ever finishing.
PAGES_PER_STEP = -1


class BackupError(Exception):
    """The backup cannot be made; the message says why and what to do."""


def default_name(vendor: str, now: datetime | None = None) -> str:
    """Return a file name like ``portal-20260130-101500.sqlite3`` (``.dump`` for PostgreSQL)."""
    stamp = (now or timezone.now()).strftime("%Y%m%d-%H%M%S")
    return f"portal-{stamp}.{'sqlite3' if vendor == 'sqlite' else 'dump'}"


def resolve_target(target: Path, vendor: str) -> Path:
    """Return the file to write: ``target`` itself, or a dated file inside it when it is a folder.

    Raises :class:`BackupError` when the file exists already or its folder does not.
    """
    if target.is_dir():
        target = target / default_name(vendor)
    if target.exists():
        raise BackupError(f"{target} exists already; give a new file name or a folder.")
    if not target.parent.is_dir():
        raise BackupError(f"The folder {target.parent} does not exist.")
    return target


def backup_sqlite(source: Path, target: Path) -> Path:
    """Copy the SQLite database ``source`` into the new file ``target`` while it is in use.

    Raises :class:`BackupError` when the source cannot be read or the copy fails its
    integrity check; ``target`` is then not created.
    """
    if not source.is_file():
        raise BackupError(f"The database {source} does not exist.")
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    try:
        # Read-only: the backup must never change the live database.
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as live,
            closing(sqlite3.connect(temporary)) as copy,
        ):
            live.backup(copy, pages=PAGES_PER_STEP)
            # A restored copy must not need the WAL file it was taken next to.
            copy.execute("PRAGMA journal_mode=DELETE")
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"The copy failed SQLite's integrity check: {verdict}")
        os.chmod(temporary, 0o600)  # it holds everything the database holds
        os.link(temporary, target)  # fails instead of overwriting a file that appeared meanwhile
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy {source}: {exc}") from None
    except FileExistsError:
        raise BackupError(f"{target} exists already; give a new file name or a folder.") from None
    finally:
        os.unlink(temporary)
    return target


@dataclass(frozen=True)
class PgDump:
    """How to run pg_dump for the configured database: argv, and the environment it needs."""

    argv: list[str]
    env: dict[str, str]

    def display(self) -> str:
        """The command as a shell line; the password stays out of it (PGPASSWORD is set apart)."""
        prefix = "PGPASSWORD=... " if "PGPASSWORD" in self.env else ""
        return prefix + shlex.join(self.argv)


def pg_dump_command(database: Mapping[str, object], target: Path) -> PgDump:
    """Return the pg_dump call that writes ``database`` (Django's settings dict) to ``target``.

    Custom format (``-Fc``): compressed, and ``pg_restore`` can restore it selectively.
    """
    argv = ["pg_dump", "--format=custom", "--no-owner", f"--file={target}"]
    if database.get("HOST"):
        argv.append(f"--host={database['HOST']}")
    if database.get("PORT"):
        argv.append(f"--port={database['PORT']}")
    if database.get("USER"):
        argv.append(f"--username={database['USER']}")
    argv.append(str(database["NAME"]))
    env = {"PGPASSWORD": str(database["PASSWORD"])} if database.get("PASSWORD") else {}
    return PgDump(argv=argv, env=env)


def run_pg_dump(command: PgDump) -> None:
    """Run ``command``; raises :class:`BackupError` when pg_dump is missing or fails (no file is left)."""
    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump is not on PATH: install the PostgreSQL client (e.g. apt install postgresql-client).")
    target = Path(next(arg for arg in command.argv if arg.startswith("--file=")).removeprefix("--file="))
    result = subprocess.run(  # noqa: S603 - argv built from settings, no shell
        command.argv, env={**os.environ, **command.env}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed (exit {result.returncode}): {result.stderr.strip()}")
    target.chmod(0o600)  # it holds everything the database holds
