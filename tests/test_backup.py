"""`manage.py backup`: a copy taken while another process writes answers restores cleanly.

Everything runs as an operator would: `manage.py` in subprocesses on a real SQLite file (and
on the PostgreSQL server for pg_dump), with a second process writing answers meanwhile.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"

WRITER = """
import os, pathlib
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
stop = pathlib.Path(os.environ["STOP_FILE"])
user = get_user_model().objects.create_user("writer")
conversation = Conversation.objects.create(owner=user, title="busy")
i = 0
while not stop.exists():
    i += 1
    Message.objects.create(conversation=conversation, role="user", content=f"question {i}")
    Message.objects.create(conversation=conversation, role="assistant", content=f"answer {i} " + "x" * 2000)
"""


def portal_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    return env | {"PORTAL_DATA_DIR": str(data_dir), **extra}


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def answers(database: Path) -> list[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        rows = connection.execute("SELECT content FROM chat_message WHERE role = 'assistant' ORDER BY id").fetchall()
    return [row[0].split(" x")[0] for row in rows]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], Path]]:
    """A migrated portal data folder and a process writing answers into it until told to stop."""
    data_dir = tmp_path / "live"
    env = portal_env(data_dir)
    manage(env, "migrate", "-v0")
    stop = tmp_path / "stop-writing"
    writer = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", WRITER],
        cwd=ROOT,
        env=env | {"STOP_FILE": str(stop)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    database = data_dir / "portal.sqlite3"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and writer.poll() is None and len(answers(database)) < 50:
        time.sleep(0.2)
    assert writer.poll() is None, writer.stderr.read().decode() if writer.stderr else ""
    try:
        yield data_dir, env, stop
    finally:
        stop.touch()
        try:
            writer.wait(timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()


def test_a_backup_taken_while_answers_are_written_restores_with_the_last_answer(
    live: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    data_dir, env, stop = live
    before = answers(data_dir / "portal.sqlite3")
    assert len(before) >= 50, "the writer did not get going"
    target = tmp_path / "portal-backup.sqlite3"
    result = manage(env, "backup", str(target))
    assert f"Backed up the database to {target}" in result.stdout
    still_writing = len(answers(data_dir / "portal.sqlite3"))
    stop.touch()

    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copy(target, restored / "portal.sqlite3")
    restored_env = portal_env(restored)
    assert manage(restored_env, "migrate", "--check", check=False).returncode == 0
    copy = answers(restored / "portal.sqlite3")
    # One consistent state: every answer up to the last one, none half-written, none missing.
    assert copy == [f"answer {i}" for i in range(1, len(copy) + 1)]
    assert copy[-1] == f"answer {len(copy)}"
    assert len(before) <= len(copy) <= still_writing
    assert target.stat().st_mode & 0o077 == 0


def test_a_backup_after_the_last_answer_holds_it(tmp_path: Path, live: tuple[Path, dict[str, str], Path]) -> None:
    data_dir, env, stop = live
    stop.touch()
    time.sleep(1)
    last = answers(data_dir / "portal.sqlite3")[-1]
    (tmp_path / "backups").mkdir()
    result = manage(env, "backup", str(tmp_path / "backups"))
    [made] = list((tmp_path / "backups").iterdir())
    assert made.name.startswith("portal-")
    assert made.suffix == ".sqlite3"
    assert str(made) in result.stdout
    assert answers(made)[-1] == last


def test_an_existing_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    env = portal_env(tmp_path / "data")
    manage(env, "migrate", "-v0")
    target = tmp_path / "taken.sqlite3"
    target.write_text("keep me")
    result = manage(env, "backup", str(target), check=False)
    assert result.returncode != 0
    assert "exists already" in result.stderr
    assert target.read_text() == "keep me"
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".partial")]


def test_a_target_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    env = portal_env(tmp_path / "data")
    manage(env, "migrate", "-v0")
    result = manage(env, "backup", str(tmp_path / "nowhere" / "b.sqlite3"), check=False)
    assert result.returncode != 0
    assert "does not exist" in result.stderr


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A database of its own on the PostgreSQL server, dropped afterwards."""
    import secrets

    import psycopg

    name = f"ops_backup_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES_SERVER}/test", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/test", autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_postgresql_gets_the_pg_dump_command_printed(tmp_path: Path, postgres_database: str) -> None:
    env = portal_env(tmp_path, DATABASE_URL=postgres_database)
    result = manage(env, "backup", str(tmp_path / "portal.dump"))
    assert f"pg_dump --format=custom --no-owner --file={tmp_path / 'portal.dump'}" in result.stdout
    name = postgres_database.rsplit("/", 1)[1]
    assert f"--host=127.0.0.1 --port=5432 --username=postgres {name}" in result.stdout
    assert "pg_restore" in result.stdout
    assert not (tmp_path / "portal.dump").exists()


def test_postgresql_with_run_writes_a_dump_pg_restore_can_read(tmp_path: Path, postgres_database: str) -> None:
    env = portal_env(tmp_path, DATABASE_URL=postgres_database)
    manage(env, "migrate", "-v0")
    target = tmp_path / "portal.dump"
    manage(env, "backup", str(target), "--run")
    listing = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True)
    assert "TABLE public chat_message" in listing.stdout
    assert target.stat().st_mode & 0o077 == 0


def test_postgresql_with_run_but_no_pg_dump_says_what_to_install(tmp_path: Path, postgres_database: str) -> None:
    env = portal_env(tmp_path, DATABASE_URL=postgres_database, PATH=str(Path(sys.executable).parent))
    result = manage(env, "backup", str(tmp_path / "portal.dump"), "--run", check=False)
    assert result.returncode != 0
    assert "pg_dump is not on PATH" in result.stderr
    assert not (tmp_path / "portal.dump").exists()
