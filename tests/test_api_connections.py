"""A streamed /v1 answer holds no database connection while it streams.

The answer may stream for minutes: a connection per open stream made PostgreSQL refuse new
clients at 256 concurrent streams (bench/relay.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django import db

from inference.api import completions
from tests.api_client import LedgerSpy, call, chat, key_for, ledger_fixture  # noqa: F401 - fixture
from tests.chat_socket import (
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


@pytest.mark.postgres
async def test_the_requests_database_connection_is_closed_before_the_answer_streams(
    alice: Any, stub: Any, ledger: LedgerSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.connection.vendor != "postgresql":
        pytest.skip("SQLite's in-memory test database is never closed; run with DATABASE_URL=postgres://...")
    seen: dict[str, Any] = {}
    admit, launch = completions.admit, completions.launch

    def admit_noting_the_connection(*args: Any) -> Any:
        prepared = admit(*args)
        seen["wrapper"] = db.connections[db.DEFAULT_DB_ALIAS]  # this thread's wrapper
        seen["open_at_admission"] = seen["wrapper"].connection is not None
        return prepared

    def launch_noting_the_connection(*args: Any) -> Any:
        seen["open_at_launch"] = seen["wrapper"].connection is not None
        return launch(*args)

    monkeypatch.setattr(completions, "admit", admit_noting_the_connection)
    monkeypatch.setattr(completions, "launch", launch_noting_the_connection)
    key = await database_sync_to_async(key_for)(alice)
    reply = await call(chat(stream=True), key=key)
    assert reply.status == 200
    assert reply.events()[-1] == "[DONE]"
    assert (seen["open_at_admission"], seen["open_at_launch"]) == (True, False)
