"""How many database queries one ``/v1`` answer (and a chat turn's admission) runs.

Every query is web CPU taken from the engine on a machine they share (docs/benchmarks.md):
this pins the count, so that a change that adds one to the hot path has to say so here.
The count covers every thread (admission and settlement run in worker threads).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db.backends import utils

from tests.api_client import call, chat, key_for
from tests.chat_socket import (
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

# The whole path of one streamed answer (see the test's comment for what each is), not
# counting SQLite's BEGIN statements (PostgreSQL's transactions begin without one).
MAX_QUERIES = 15


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement run on any thread while the test runs (a counting wrapper)."""
    seen: list[str] = []
    lock = threading.Lock()
    execute, executemany = utils.CursorWrapper.execute, utils.CursorWrapper.executemany

    def counted(self: Any, sql: str, params: Any = None) -> Any:
        with lock:
            seen.append(sql)
        return execute(self, sql, params)

    def counted_many(self: Any, sql: str, param_list: Any) -> Any:
        with lock:
            seen.append(sql)
        return executemany(self, sql, param_list)

    monkeypatch.setattr(utils.CursorWrapper, "execute", counted)
    monkeypatch.setattr(utils.CursorWrapper, "executemany", counted_many)
    return seen


async def test_one_streamed_answer_runs_a_bounded_number_of_queries(alice: Any, stub: Any, queries: list[str]) -> None:
    secret = await database_sync_to_async(key_for)(alice)
    warm = await call(chat(stream=True), key=secret)  # the day's usage row and counter exist from now on
    assert warm.status == 200
    queries.clear()
    reply = await call(chat(stream=True), key=secret)
    assert reply.status == 200
    assert reply.events()[-1] == "[DONE]"
    # The key with its owner, the owner's roles (a member?), the policy (once: it was read
    # three times), the owner's groups (for the plugins' checks), the engines; the admission
    # (counter lock, its update, the reservation); the settlement (counter lock, the
    # reservation, the day's usage, the counter) and the audit event (chain head, event, head).
    statements = [sql for sql in queries if sql.split()[0].upper() not in ("BEGIN", "SAVEPOINT", "RELEASE")]
    assert len(statements) <= MAX_QUERIES, "\n".join(statements)
    policy_reads = [sql for sql in statements if "accounts_userpolicy" in sql]
    assert len(policy_reads) == 1


async def test_a_chat_turn_reads_the_users_policy_once(alice: Any, stub: Any, queries: list[str]) -> None:
    # The parameters' ranges (in each of the turn's two plans) and the admission all ask for
    # the policy; within one turn it is read once (accounts.policies.read_once).
    from chat import conversations

    turn = await database_sync_to_async(conversations.begin_turn)(alice, "send", None, "Hello?", {})
    assert turn.answer.pk is not None
    policy_reads = [sql for sql in queries if "accounts_userpolicy" in sql]
    assert len(policy_reads) == 1, len(policy_reads)
