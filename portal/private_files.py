"""Files the portal writes belong to the user it runs as, and to nobody else.

The data folder holds the SQLite database (sessions, MFA secrets, engine keys, every
conversation) with its -wal/-shm journals, the generated secret key, engine logs and
prepared models. Files are created by SQLite, logging handlers, vLLM and ``tempfile`` alike,
so one process-wide umask is the only rule that catches them all, including files a later
change adds. ``portal.settings`` applies it, because every process of the portal (manage.py
commands, Daphne, the supervisor, the test runner) loads the settings before it writes.
"""

from __future__ import annotations

import os

# Group and others get no bit: files come out 0600 and folders 0700 whatever umask the
# shell had (the usual 022 would give 0644 and 0755).
PRIVATE_UMASK = 0o077


def keep_new_files_private() -> None:
    """Add :data:`PRIVATE_UMASK` to this process's umask (children such as vLLM inherit it)."""
    previous = os.umask(PRIVATE_UMASK)
    os.umask(previous | PRIVATE_UMASK)
