"""`/metrics`: who may read it, what moves after a generation, and the multiprocess mode.

The counter tests run the generation service against the stub engine (tests/chat_stub_engine.py),
because the point is the portal's own counting; one test does the same against the real
vLLM engine and reads vLLM's own figures through the portal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from inference.generation import Generation, prepare
from inference.sampling import parse_sampling
from portal import metrics
from tests.chat_socket import (
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.stack import Stack
from tests.test_chat_generation import RecordingSink

TOKEN = "metrics-token-" + "x" * 40
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def token(settings: Any) -> str:
    settings.PORTAL_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(token: str = TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Read /metrics with the token; return {(sample name, sorted labels): value}."""
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_anonymous_visitors_are_refused_without_content(db: Any, token: str) -> None:
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"portal_" not in response.content


def test_a_wrong_token_is_refused_even_for_staff(adam: Any, client_for: Any, token: str) -> None:
    response = client_for(adam).get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert response.status_code == 401
    assert b"portal_" not in response.content


def test_a_token_is_refused_when_none_is_configured(db: Any, settings: Any) -> None:
    settings.PORTAL_METRICS_TOKEN = None
    response = Client().get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 401


def test_a_member_session_is_forbidden(alice: Any, client_for: Any, token: str) -> None:
    response = client_for(alice).get("/metrics")
    assert response.status_code == 403
    assert b"portal_" not in response.content


def test_a_staff_session_reads_the_metrics(adam: Any, client_for: Any) -> None:
    response = client_for(adam).get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"portal_active_generations" in response.content


def test_the_token_reads_the_metrics(db: Any, token: str) -> None:
    samples = scrape()
    assert ("portal_collector_up", (("collector", "engines"),)) in samples


def test_a_short_token_is_refused_at_start_up() -> None:
    env = {**os.environ, "PORTAL_METRICS_TOKEN": "short", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "PORTAL_METRICS_TOKEN must be at least 32 characters" in result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_the_counters_move_after_a_generation(alice: Any, stub: Any, token: str) -> None:
    model = "stub-model"
    before = await database_sync_to_async(scrape)()
    sampling = await database_sync_to_async(parse_sampling)({}, alice)  # reads the policy
    prepared = await database_sync_to_async(prepare)(
        alice.pk, [{"role": "user", "content": "hi"}], sampling, source="chat"
    )
    outcome = await Generation(prepared, RecordingSink()).run()
    assert outcome.status == "complete"
    after = await database_sync_to_async(scrape)()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("portal_generations_total", outcome="complete", model=model, channel="chat") == 1
    assert grew("portal_tokens_total", direction="prompt", model=model, channel="chat") == 11
    assert grew("portal_tokens_total", direction="completion", model=model, channel="chat") == 2
    assert grew("portal_time_to_first_token_seconds_count", model=model, channel="chat") == 1
    assert grew("portal_generation_duration_seconds_count", model=model, channel="chat") == 1
    assert value(after, "portal_active_generations", channel="chat") == 0
    # The stub engine is ready in the database; it has no vLLM /metrics, which is reported.
    assert value(after, "portal_engine_state", engine="stub", state="ready") == 1
    assert value(after, "portal_engine_state", engine="stub", state="crashed") == 0
    assert value(after, "portal_engine_metrics_up", engine="stub") == 0


def test_refusals_are_counted_by_reason(db: Any, token: str) -> None:
    before = scrape()
    metrics.refused("quota", metrics.API)
    after = scrape()
    grew = value(after, "portal_refusals_total", reason="quota", channel="api")
    assert grew - value(before, "portal_refusals_total", reason="quota", channel="api") == 1


@pytest.fixture
def audit_state() -> Iterator[list[metrics.AuditChainState]]:
    states = [metrics.AuditChainState(events=42, intact=True, last_verified_at=datetime(2026, 1, 1, tzinfo=UTC))]
    metrics.register_audit_state(lambda: states[0])
    yield states
    metrics.unregister_collector("audit")


def test_the_audit_chain_state_comes_from_its_hook(db: Any, token: str, audit_state: Any) -> None:
    samples = scrape()
    assert value(samples, "portal_audit_chain_events") == 42
    assert value(samples, "portal_audit_chain_intact") == 1
    audit_state[0] = metrics.AuditChainState(events=43, intact=False)
    assert value(scrape(), "portal_audit_chain_intact") == 0


class BrokenCollector:
    """A collector that fails, as a plugin's might."""

    def collect(self) -> Iterator[Any]:
        raise RuntimeError("no figures today")


def test_a_failing_collector_is_reported_and_the_rest_still_answers(db: Any, token: str) -> None:
    metrics.register_collector("broken", BrokenCollector())
    try:
        samples = scrape()
    finally:
        metrics.unregister_collector("broken")
    assert value(samples, "portal_collector_up", collector="broken") == 0
    assert value(samples, "portal_collector_up", collector="engines") == 1


COUNT_ONCE = """
import sys
from portal import metrics
metrics.generation_started("chat")
metrics.generation_finished(channel="chat", model="m", outcome="complete", prompt_tokens=5,
                            completion_tokens=7, ttft_seconds=0.2, duration_seconds=1.0)
metrics.generation_started("chat")  # still running when the process exits
sys.stdout.buffer.write(metrics.exposition())
"""


READ = "import sys; from portal import metrics; sys.stdout.buffer.write(metrics.exposition())"
FORGET = "from portal import metrics; metrics.forget_dead_processes()"


def test_several_processes_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", COUNT_ONCE], cwd=ROOT, env=env, check=True, capture_output=True)
    text = subprocess.run(
        [sys.executable, "-c", READ], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    assert 'portal_generations_total{channel="chat",model="m",outcome="complete"} 2.0' in text
    assert 'portal_tokens_total{channel="chat",direction="completion",model="m"} 14.0' in text
    # Both writers have exited with one answer "running": counted until a process forgets them.
    assert 'portal_active_generations{channel="chat"} 2.0' in text
    text = subprocess.run(
        [sys.executable, "-c", f"{FORGET}; {READ}"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    assert 'portal_active_generations{channel="chat"} 2.0' not in text
    assert 'portal_generations_total{channel="chat",model="m",outcome="complete"} 2.0' in text


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_the_real_engines_figures_and_a_real_generation_show_up(
    alice: Any, engine_stack: Stack, token: str
) -> None:
    config = await database_sync_to_async(engine_stack.register_in_test_db)()
    before = await database_sync_to_async(scrape)()
    sampling = await database_sync_to_async(parse_sampling)({"temperature": 0, "max_tokens": 8}, alice)
    messages = [{"role": "user", "content": "Say hello."}]
    prepared = await database_sync_to_async(prepare)(alice.pk, messages, sampling, source="chat")
    outcome = await Generation(prepared, RecordingSink()).run()
    assert outcome.status == "complete"
    after = await database_sync_to_async(scrape)()
    model, engine = engine_stack.served_model, config.name
    assert (
        value(after, "portal_generations_total", outcome="complete", model=model, channel="chat")
        - value(before, "portal_generations_total", outcome="complete", model=model, channel="chat")
        == 1
    )
    completion = value(after, "portal_tokens_total", direction="completion", model=model, channel="chat")
    assert completion - value(before, "portal_tokens_total", direction="completion", model=model, channel="chat") == (
        outcome.completion_tokens
    )
    assert value(after, "portal_engine_metrics_up", engine=engine) == 1
    assert value(after, "portal_engine_state", engine=engine, state="ready") == 1
    assert ("portal_engine_kv_cache_usage_ratio", (("engine", engine),)) in after
    assert ("portal_engine_preemptions_total", (("engine", engine),)) in after
    assert value(after, "portal_engine_requests_running", engine=engine) == 0


def test_every_series_the_grafana_dashboard_plots_is_one_the_portal_exposes(db: Any, token: str) -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable.get("definition", "") for variable in dashboard["templating"]["list"]]
    plotted = {
        re.sub(r"_(total|bucket|count|sum)$", "", name) for q in queries for name in re.findall(r"portal_\w+", q)
    }
    metrics.register_audit_state(lambda: metrics.AuditChainState(events=1, intact=True))
    try:
        response = Client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    finally:
        metrics.unregister_collector("audit")
    exposed = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert len(plotted) > 20
    assert plotted <= exposed, plotted - exposed


def test_a_request_with_no_ready_engine_is_counted_as_refused(alice: Any, token: str) -> None:
    from inference.rejections import GenerationRejected

    before = value(scrape(), "portal_refusals_total", reason="engine_unavailable", channel="chat")
    with pytest.raises(GenerationRejected):
        prepare(alice.pk, [{"role": "user", "content": "hi"}], parse_sampling({}, alice), source="chat")
    after = value(scrape(), "portal_refusals_total", reason="engine_unavailable", channel="chat")
    assert after - before == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_open_websockets_are_counted_until_they_close(alice: Any, token: str) -> None:
    from tests.websocket import open_socket

    before = value(await database_sync_to_async(scrape)(), "portal_websockets_open")
    communicator, connected, _ = await open_socket("/ws/status/", alice)
    assert connected
    assert value(await database_sync_to_async(scrape)(), "portal_websockets_open") == before + 1
    await communicator.disconnect()
    assert value(await database_sync_to_async(scrape)(), "portal_websockets_open") == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_refused_websocket_is_not_counted(token: str) -> None:
    from tests.websocket import open_socket

    before = value(await database_sync_to_async(scrape)(), "portal_websockets_open")
    _, connected, _ = await open_socket("/ws/status/")
    assert not connected
    assert value(await database_sync_to_async(scrape)(), "portal_websockets_open") == before
