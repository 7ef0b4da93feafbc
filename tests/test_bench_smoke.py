"""The benchmark harness runs end to end on a few requests, so that ``make bench`` cannot rot.

No figure is asserted (they depend on the machine); what is asserted is that every path
answered, counted tokens and wrote its report.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bench import portal_stack, relay, report, run
from tests.stack import Stack


@pytest.fixture(scope="module")
def bench_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, int]]:
    """A production-like web process on its own database, with no engine."""
    stack = portal_stack.build(tmp_path_factory.mktemp("bench-smoke"), max_num_seqs=8, engine=False)
    try:
        url, process = portal_stack.start_web(stack)
        yield stack, url, process.pid
    finally:
        stack.teardown()
        stack.database.drop()


def test_the_relay_ceiling_relays_every_answer_of_the_stub_upstream(bench_web: tuple[Stack, str, int]) -> None:
    stack, url, pid = bench_web
    rows = relay.measure(stack, url, pid, [3], 30)
    assert [(row["mode"], row["concurrency"]) for row in rows] == [("direct", 3), ("api", 3), ("ws", 3)]
    for row in rows:
        assert (row["errors"], row["first_error"]) == (0, None)
        assert row["output_tokens"] == 3 * 30
        assert row["ratio_to_direct"] is not None


def test_the_report_has_the_tables_and_the_chart(tmp_path: Path) -> None:
    rows = [
        {"mode": mode, "concurrency": 1, "output_tokens_per_s": tps, "web_cpu_ms_per_1k_tokens": cpu}
        for mode, tps, cpu in (("direct", 50.0, 0.0), ("ws", 49.0, 600.0), ("api", 49.5, 500.0))
    ]
    result = {
        "machine": run.machine(),
        "settings": {"rounds": 1, "per_stream": 1, "max_tokens": 8, "relay_tokens": 30},
        "rows": rows,
        "relay": [],
        "extra": {"admission": {"status": "ok", "output": "p50 1 ms"}},
    }
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nprose\n\n{report.START}\nold\n{report.END}\n\nmore prose\n")
    report.write(result, page)
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nprose\n")
    assert text.endswith("\n\nmore prose\n")
    assert "old" not in text
    assert "| ws | 1 | 49.0 |" in text
    assert "p50 1 ms" in text
    assert (tmp_path / report.CHART).stat().st_size > 1000


@pytest.mark.engine
def test_the_comparison_drives_every_mode_against_the_real_engine(engine_stack: Stack) -> None:
    url, process = engine_stack.start_web()
    targets = run.Targets(engine_stack.engine(), url, portal_stack.credentials(engine_stack))
    args = run.parse_args(["--concurrency", "2", "--rounds", "1", "--max-tokens", "8", "--min-answers", "2"])
    rows = asyncio.run(run.drive(args, targets, psutil.Process(process.pid)))
    assert {row["mode"] for row in rows} == {"direct", "ws", "api"}
    for row in rows:
        assert row["errors"] == 0, json.dumps(row)
        assert row["output_tokens"] > 0
