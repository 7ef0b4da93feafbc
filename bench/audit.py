"""Benchmark of the audit trail: what one event adds to a request, and events/s with 8 writers.

Not a test: run it by hand against a scratch PostgreSQL database (it is migrated, and the
trail's tables are emptied first)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/audit_bench .venv/bin/python bench/audit.py

Targets (issue 9): p50 of one event at most 2 ms; at least 500 events/s sustained with 8
concurrent writer processes. Each event is written in its own transaction, as at the end of
a request (the head row's lock is held from the append to the commit).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()


def _write(count: int, label: str, inside: list[float] | None = None) -> list[float]:
    """Write ``count`` events, each in its own transaction; return each transaction's seconds.

    ``inside`` collects the time of ``record()`` alone, within a transaction that was open
    already: what an event adds to a request whose transaction commits anyway.
    """
    from django.db import transaction

    from portal.audit.trail import record

    timings = []
    for index in range(count):
        started = time.perf_counter()
        with transaction.atomic():
            began = time.perf_counter()
            record("bench.event", target=f"{label}-{index}", outcome="ok", model="bench", prompt_tokens=12,
                   completion_tokens=34, data={"index": index})  # fmt: skip
            if inside is not None:
                inside.append(time.perf_counter() - began)
        timings.append(time.perf_counter() - started)
    return timings


def _writer(count: int, label: str, ready: Any, results: Any) -> None:
    _setup()
    from django.db import connection

    connection.ensure_connection()
    ready.wait()  # every writer starts at once, after its (slow) Django start-up
    started = time.perf_counter()
    timings = _write(count, label)
    results.put((started, time.perf_counter(), timings))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="events for the one-writer latency")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=1000)
    options = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from portal.audit.verify import verify_chain

    if connection.vendor != "postgresql":
        print("note: not PostgreSQL; the targets are for PostgreSQL")
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_event, audit_checkpoint" if connection.vendor == "postgresql" else "SELECT 1")
        cursor.execute("DELETE FROM audit_chainhead")
    connection.close()

    print(f"PORTAL_AUDIT_SYNCHRONOUS_COMMIT={settings.AUDIT_SYNCHRONOUS_COMMIT}, load average {os.getloadavg()}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    inside: list[float] = []
    single = _write(options.single, "single", inside)
    print(f"one writer, {options.single} events: record() in an open transaction p50 "
          f"{_ms(statistics.median(inside))}; whole transaction with its commit p50 {_ms(statistics.median(single))}, "
          f"p95 {_ms(statistics.quantiles(single, n=20)[18])}")  # fmt: skip

    context = multiprocessing.get_context("spawn")
    ready, queue = context.Barrier(options.writers), context.Queue()
    writers = [
        context.Process(target=_writer, args=(options.per_writer, f"w{n}", ready, queue))
        for n in range(options.writers)
    ]
    for writer in writers:
        writer.start()
    results = [queue.get(timeout=600) for _ in writers]
    for writer in writers:
        writer.join()
    # Sustained rate: from the first writer's start to the last writer's end.
    elapsed = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    timings = [value for _, _, result in results for value in result]
    total = options.writers * options.per_writer
    p50, p95 = _ms(statistics.median(timings)), _ms(statistics.quantiles(timings, n=20)[18])
    print(f"{options.writers} writers, {total} events in {elapsed:.1f} s: {total / elapsed:.0f} events/s "
          f"(p50 per event {p50}, p95 {p95})")  # fmt: skip
    started = time.perf_counter()
    report = verify_chain()
    print(f"verify: {report.summary()} ({report.checked} events in {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
