"""The ledger under concurrency: reservations that race for one budget or one user's slots.

On PostgreSQL (``DATABASE_URL`` set) the operations run at once in threads, each with its
own database connection, released together by a barrier: the row lock is what keeps the
ledger right. On SQLite the same operations run one after another, because SQLite
serialises writers anyway (and the test database is an in-memory shared cache that
answers a second writer with "table is locked" instead of waiting): there the tests check
the bookkeeping, not the lock.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections

from accounts import ledger
from accounts.ledger import QuotaRefused
from accounts.models import DailyUsage, GroupPolicy, Policy, Reservation, UsageCounter
from accounts.roles import MEMBERS

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = connection.vendor == "postgresql"


def run_at_once(calls: list[Callable[[], Any]], workers: int | None = None) -> list[Any]:
    """Run ``calls`` concurrently on PostgreSQL, one after another on SQLite; return results or exceptions.

    Without ``workers`` every call has its own thread and all start together; with it,
    ``workers`` threads (each a database connection: the server allows 100) take turns.
    """

    def outcome(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the test inspects every failure
            return exc
        finally:
            connections.close_all()

    if not CONCURRENT:
        return [outcome(call) for call in calls]
    if workers is not None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(outcome, calls))
    barrier = threading.Barrier(len(calls))

    def together(call: Callable[[], Any]) -> Any:
        # Connect first: connecting takes longer than a reservation and would spread them out.
        connection.ensure_connection()
        barrier.wait()
        return outcome(call)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(together, calls))


def give_members(**limits: Any) -> None:
    policy = Policy.objects.create(name="members", **limits)
    GroupPolicy.objects.create(group=Group.objects.get(name=MEMBERS), policy=policy)


def reserve_for(user: Any, prompt: int, max_tokens: int) -> Callable[[], Reservation]:
    return lambda: ledger.reserve(
        user, model="m", channel="chat", prompt_tokens=prompt, max_tokens=max_tokens, request_id=uuid.uuid4().hex
    )


@pytest.mark.postgres
def test_fifty_reservations_against_a_budget_for_one_let_exactly_one_through(alice):
    give_members(tokens_per_day=110)
    results = run_at_once([reserve_for(alice, 10, 100) for _ in range(50)])
    granted = [result for result in results if isinstance(result, Reservation)]
    refused = [result for result in results if isinstance(result, QuotaRefused)]
    assert len(granted) == 1
    assert len(refused) == 49
    assert {refusal.code for refusal in refused} == {"quota_exceeded"}
    state = UsageCounter.objects.get(user=alice)
    assert (state.held_tokens, state.active_answers, state.day_requests) == (110, 1, 1)


@pytest.mark.postgres
def test_random_reserve_settle_and_cancel_leave_the_ledger_equal_to_the_settled_usage(alice, bob):
    give_members(tokens_per_day=20_000, concurrent_answers=4)
    rng = random.Random(8)  # noqa: S311 - a reproducible mix, not a secret

    def operation(user: Any, prompt: int, max_tokens: int, used: int, ending: str) -> Callable[[], str]:
        def run() -> str:
            reservation = reserve_for(user, prompt, max_tokens)()
            completion = min(used, reservation.max_tokens)
            if ending == "cancelled":
                ledger.settle(reservation, prompt_tokens=0, completion_tokens=0, outcome="cancelled")
            else:
                ledger.settle(reservation, prompt_tokens=prompt, completion_tokens=completion, outcome=ending)
                # A second settlement (a retry, a racing sweep) must change nothing.
                ledger.settle(reservation, prompt_tokens=prompt, completion_tokens=999, outcome=ending)
            return ending

        return run

    endings = ["complete", "stopped", "interrupted", "error", "cancelled"]
    calls = [
        operation(
            rng.choice([alice, bob]), rng.randint(1, 200), rng.randint(1, 800), rng.randint(0, 900), rng.choice(endings)
        )
        for _ in range(200)
    ]
    results = run_at_once(calls, workers=24)
    unexpected = [
        result for result in results if isinstance(result, Exception) and not isinstance(result, QuotaRefused)
    ]
    assert unexpected == []
    assert any(isinstance(result, str) for result in results)
    for user in (alice, bob):
        state = UsageCounter.objects.get(user=user)
        settled = Reservation.objects.filter(user=user, settled_at__isnull=False).exclude(outcome="cancelled")
        used = sum(row.used_prompt_tokens + row.used_completion_tokens for row in settled)
        rolled_up = sum(row.total_tokens for row in DailyUsage.objects.filter(user=user))
        assert state.day_tokens == used == rolled_up
        assert state.day_tokens <= 20_000
        assert (state.held_tokens, state.active_answers) == (0, 0)
        assert not Reservation.objects.filter(user=user, settled_at__isnull=True).exists()
        assert min(state.day_tokens, state.month_tokens, state.day_requests) >= 0


@pytest.mark.postgres
def test_one_users_parallel_reservations_never_exceed_the_concurrency_cap(alice):
    give_members(concurrent_answers=3)
    results = run_at_once([reserve_for(alice, 1, 1) for _ in range(20)])
    granted = [result for result in results if isinstance(result, Reservation)]
    assert len(granted) == 3
    assert {result.code for result in results if isinstance(result, QuotaRefused)} == {"too_many_answers"}
    assert UsageCounter.objects.get(user=alice).active_answers == 3
