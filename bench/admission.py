"""Admission latency: authentication, policy, rate limit and reservation, 50 at once, on PostgreSQL.

Not a test: it prints figures. Run it against a PostgreSQL server (it creates and drops a
``test_…`` database of its own, as the test runner does)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/admission.py

One admission is what the portal does before a generation starts, minus the engine: load
the session and its user (authentication), work out the effective policy (override, groups,
site default), and reserve tokens and a concurrency slot under the ledger's row lock, which
also enforces the per-minute request limit. Each round starts ``--concurrency`` admissions
at once from as many threads, each with its own database connection (as Daphne's thread
pool has); ``--same-user`` makes them all one user's, so they queue on one row lock. The
reservations are settled between rounds, outside the timing. The issue's target: p50 ≤ 5 ms,
p99 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Each thread holds its connection while it waits for the others (Daphne's threads keep
# theirs): a bounded pool smaller than --concurrency would make them wait for each other.
os.environ["PORTAL_DB_POOL_SIZE"] = "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--same-user", action="store_true", help="all admissions for one user (one row lock)")
    options = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL server: the benchmark is about PostgreSQL's row locks.")
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    # A database of its own: test_<name> may belong to a test run going on at the same time.
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_admission_{os.getpid()}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(options.concurrency, options.rounds, options.same_user)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(concurrency: int, rounds: int, same_user: bool) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connections

    from accounts import ledger
    from accounts.models import GroupPolicy, Policy, Reservation
    from accounts.policies import effective_policy
    from accounts.roles import MEMBERS, assign_role

    users = []
    for index in range(1 if same_user else concurrency):
        user = get_user_model().objects.create_user(f"bench{index}", f"bench{index}@example.com", "x" * 12)
        assign_role(user, MEMBERS)
        users.append(user)
    policy = Policy.objects.create(
        name="bench", tokens_per_day=10**11, requests_per_minute=10**6, concurrent_answers=10**4
    )
    GroupPolicy.objects.create(group=Group.objects.get(name=MEMBERS), policy=policy)
    sessions = []
    for user in users:
        store = SessionStore()
        store["_auth_user_id"] = str(user.pk)
        store.create()
        sessions.append(store.session_key)

    queries = [0]
    counting = threading.Lock()

    def count_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with counting:
            queries[0] += 1
        return execute(sql, params, many, context)

    def admit(index: int) -> float:
        with connections["default"].execute_wrapper(count_query):
            return _admit(index)

    def _admit(index: int) -> float:
        key = sessions[index % len(sessions)]
        began = time.perf_counter()
        user_id = SessionStore(session_key=key)["_auth_user_id"]  # authentication: session -> user
        user = get_user_model().objects.get(pk=user_id, is_active=True)
        policy = effective_policy(user)
        ledger.reserve(
            user,
            model="bench-model",
            channel="chat",
            prompt_tokens=200,
            max_tokens=1000,
            request_id=uuid.uuid4().hex,
            policy=policy,
        )
        return (time.perf_counter() - began) * 1000

    barrier = threading.Barrier(concurrency)

    def together(index: int) -> float:
        # Connecting is outside the timing (Daphne's threads keep their connections open);
        # closing after each admission lets the benchmark drop its database at the end.
        connections["default"].ensure_connection()
        barrier.wait()
        try:
            return admit(index)
        finally:
            connections.close_all()

    timings: list[float] = []
    cpu = 0.0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(together, range(concurrency)))  # warm-up round: connections, caches
        settle_all(Reservation, ledger)
        queries[0] = 0
        for _ in range(rounds):
            # This process's CPU (all threads): robust where wall-clock latency is not, on a
            # machine whose cores are shared. It includes connecting, outside the timings.
            began = time.process_time()
            timings.extend(pool.map(together, range(concurrency)))
            cpu += time.process_time() - began
            settle_all(Reservation, ledger)
    report(timings, concurrency, rounds, same_user)
    per_query = queries[0] / len(timings)
    print(f"per admission: {cpu / len(timings) * 1000:.2f} ms CPU of this process, {per_query:.1f} queries")


def settle_all(reservation_model: Any, ledger: Any) -> None:
    for reservation in reservation_model.objects.filter(settled_at__isnull=True):
        ledger.settle(reservation, prompt_tokens=200, completion_tokens=10, outcome="complete")


def report(timings: list[float], concurrency: int, rounds: int, same_user: bool) -> None:
    ordered = sorted(timings)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    who = "one user" if same_user else f"{concurrency} users"
    print(f"admissions: {len(ordered)} ({rounds} rounds of {concurrency} at once, {who})")
    p90 = ordered[int(0.9 * len(ordered)) - 1]
    print(f"p50 {p50:.2f} ms   p90 {p90:.2f} ms   p99 {p99:.2f} ms   max {ordered[-1]:.2f} ms")
    print(f"target p50 <= 5 ms: {'met' if p50 <= 5 else 'missed'}; p99 <= 20 ms: {'met' if p99 <= 20 else 'missed'}")


if __name__ == "__main__":
    main()
