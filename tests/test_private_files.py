"""What the portal writes is private to its user even when started under the usual umask 022."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process, as `make run` or a unit would start it: migrate (the database, the secret
# key), hold a connection that wrote (so the -wal and -shm journals exist), write an engine
# log line and take a backup; then list every mode under the data folder.
WRITE_EVERYTHING = """
import json, os, stat, django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.contrib.sessions.backends.db import SessionStore
from inference.engine_process import note
call_command("migrate", "-v0")
session = SessionStore()
session["k"] = 1
session.create()
note("demo", "started")
call_command("backup", "-v0")
modes = {}
for folder, _, files in os.walk(settings.DATA_DIR):
    for path in [folder, *(os.path.join(folder, name) for name in files)]:
        modes[os.path.relpath(path, settings.DATA_DIR)] = stat.S_IMODE(os.stat(path).st_mode)
print(json.dumps(modes))
"""


def _with_umask_022() -> None:
    os.umask(0o022)


def test_files_and_folders_made_under_umask_022_are_private(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    env |= {"PORTAL_DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    # The umask is set in the child before it starts, as a shell with the usual umask 022 would.
    result = subprocess.run(
        [sys.executable, "-c", WRITE_EVERYTHING],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_with_umask_022,
    )
    assert result.returncode == 0, result.stderr
    modes: dict[str, int] = json.loads(result.stdout.splitlines()[-1])
    expected = {"portal.sqlite3", "portal.sqlite3-wal", "portal.sqlite3-shm", "secret_key", "logs/engine-demo.log"}
    assert expected <= modes.keys(), sorted(modes)
    assert any(name.startswith("backups/") for name in modes), sorted(modes)
    open_to_others = {name: f"{mode:o}" for name, mode in modes.items() if mode & (stat.S_IRWXG | stat.S_IRWXO)}
    assert open_to_others == {}
