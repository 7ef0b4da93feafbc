"""Prometheus metrics of the portal: what the web processes count, and what is read at scrape time.

Two kinds of figures end up on ``/metrics``:

- **Counted** by the code that sees the event, through the functions below
  (:func:`generation_started`, :func:`generation_finished`, :func:`refused`,
  :func:`socket_opened`, :func:`socket_closed`). They live in this process.
- **Read at scrape time** by collectors the apps register with :func:`register_collector`
  (engine states and vLLM's own figures from ``inference``; the audit chain through
  :func:`register_audit_state`). They read the database or an engine, so every process sees
  the same values and nothing has to be counted twice.

Several web processes: when ``PROMETHEUS_MULTIPROC_DIR`` names a directory (it must be set
before the process starts; prometheus_client reads it at import), every process writes its
counters there and whichever process answers a scrape adds them all up
(prometheus_client's multiprocess mode). docs/deploy.md says why this and not per-process
scraping.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

logger = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Channels the generation service is used from (other values are counted as they come).
CHAT, API = "chat", "api"

# Seconds; a first token after more than two minutes is already an engine timeout.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

# Our own metrics are kept out of prometheus_client's global registry: the scrape builds its
# registry itself (see exposition), and tests can import this module any number of times.
_REGISTRY = CollectorRegistry(auto_describe=True)

GENERATIONS = Counter(
    "portal_generations",
    "Answers generated, by how they ended (complete, stopped, interrupted, error), model and channel.",
    ["outcome", "model", "channel"],
    registry=_REGISTRY,
)
TOKENS = Counter(
    "portal_tokens",
    "Tokens of settled answers: prompt (in) and completion (out), by model and channel.",
    ["direction", "model", "channel"],
    registry=_REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "portal_time_to_first_token_seconds",
    "Seconds from the start of a generation to its first token.",
    ["model", "channel"],
    buckets=TTFT_BUCKETS,
    registry=_REGISTRY,
)
DURATION = Histogram(
    "portal_generation_duration_seconds",
    "Seconds from the start of a generation to its end, whatever the outcome.",
    ["model", "channel"],
    buckets=DURATION_BUCKETS,
    registry=_REGISTRY,
)
ACTIVE_GENERATIONS = Gauge(
    "portal_active_generations",
    "Answers being streamed right now.",
    ["channel"],
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
OPEN_SOCKETS = Gauge(
    "portal_websockets_open",
    "WebSocket connections accepted and still open.",
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)
REFUSALS = Counter(
    "portal_refusals",
    "Requests refused before generating, by reason (quota, rate_limit, concurrency, engine_unavailable, ...).",
    ["reason", "channel"],
    registry=_REGISTRY,
)


# --- What the code that sees an event calls ------------------------------------------------


def generation_started(channel: str) -> None:
    """Count an answer that starts streaming (``channel``: ``chat`` or ``api``).

    Every call must be matched by exactly one :func:`generation_finished`. Never raises.
    """
    ACTIVE_GENERATIONS.labels(channel).inc()


def generation_finished(
    *,
    channel: str,
    model: str,
    outcome: str,
    prompt_tokens: int | None,
    completion_tokens: int,
    ttft_seconds: float | None,
    duration_seconds: float,
) -> None:
    """Count a settled answer: its outcome, its tokens, time to first token and duration.

    ``outcome`` is the generation service's status (complete, stopped, interrupted, error);
    ``ttft_seconds`` is None when no token came. Call it once per answer, after settlement.
    Never raises.
    """
    ACTIVE_GENERATIONS.labels(channel).dec()
    GENERATIONS.labels(outcome, model, channel).inc()
    if prompt_tokens:
        TOKENS.labels("prompt", model, channel).inc(prompt_tokens)
    if completion_tokens:
        TOKENS.labels("completion", model, channel).inc(completion_tokens)
    if ttft_seconds is not None:
        TIME_TO_FIRST_TOKEN.labels(model, channel).observe(ttft_seconds)
    DURATION.labels(model, channel).observe(duration_seconds)


def refused(reason: str, channel: str) -> None:
    """Count a request refused before generating.

    ``reason`` is the refusal's code: ``quota``, ``rate_limit``, ``concurrency``,
    ``engine_unavailable``, ... (keep it a short fixed word: it is a label). Never raises.
    """
    REFUSALS.labels(reason, channel).inc()


def socket_opened() -> None:
    """Count a WebSocket the portal accepted; match it with :func:`socket_closed`."""
    OPEN_SOCKETS.inc()


def socket_closed() -> None:
    """Count an accepted WebSocket that closed."""
    OPEN_SOCKETS.dec()


# --- What is read at scrape time ---------------------------------------------------------


class ScrapeCollector(Protocol):
    """Anything with prometheus_client's ``collect()``."""

    def collect(self) -> Iterable[Metric]: ...


_collectors: dict[str, ScrapeCollector] = {}


def register_collector(name: str, collector: ScrapeCollector) -> None:
    """Add a collector whose ``collect()`` runs on every scrape (replacing one of the same name).

    A collector that raises is logged and reported as ``portal_collector_up{collector=name} 0``;
    the rest of the scrape is unaffected.
    """
    _collectors[name] = collector


def unregister_collector(name: str) -> None:
    """Remove a collector added with :func:`register_collector` (tests; missing names are ignored)."""
    _collectors.pop(name, None)


@dataclass(frozen=True)
class AuditChainState:
    """What the audit trail says about its chain, for ``/metrics``."""

    events: int
    intact: bool
    last_verified_at: datetime | None = None


AuditStateProvider = Callable[[], AuditChainState]


class _AuditCollector:
    def __init__(self, provider: AuditStateProvider) -> None:
        self.provider = provider

    def collect(self) -> Iterator[Metric]:
        state = self.provider()
        yield GaugeMetricFamily("portal_audit_chain_events", "Events in the audit chain.", value=state.events)
        yield GaugeMetricFamily(
            "portal_audit_chain_intact", "1 when the audit chain last verified intact, else 0.", value=int(state.intact)
        )
        if state.last_verified_at is not None:
            yield GaugeMetricFamily(
                "portal_audit_chain_verified_timestamp_seconds",
                "When the audit chain was last verified (Unix time).",
                value=state.last_verified_at.timestamp(),
            )


def register_audit_state(provider: AuditStateProvider) -> None:
    """Let the audit trail report its chain: ``provider`` is called on every scrape."""
    register_collector("audit", _AuditCollector(provider))


class _Scrape:
    """One scrape: this process's (or all processes') counters plus the registered collectors."""

    def collect(self) -> Iterator[Metric]:
        if multiprocess_dir() is not None:
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            yield from combined.collect()
        else:
            yield from _REGISTRY.collect()
        up = GaugeMetricFamily("portal_collector_up", "1 when a scrape-time collector worked.", labels=["collector"])
        for name, collector in sorted(_collectors.items()):
            try:
                metrics = list(collector.collect())
            except Exception:
                logger.exception("metrics collector %s failed", name)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


def exposition() -> bytes:
    """Return every metric in Prometheus' text format (content type: ``CONTENT_TYPE``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape())
    return generate_latest(registry)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- Multiprocess mode -----------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """Return the multiprocess directory when multiprocess mode is on, else None."""
    value = os.environ.get(MULTIPROC_DIR_VARIABLE, "").strip()
    return Path(value) if value else None


_PID_FILE = re.compile(r"_(\d+)\.db$")


def forget_dead_processes() -> list[int]:
    """Drop the live gauges of web processes that have exited; return their pids.

    Without this, the "active" and "open sockets" figures of a process that was killed
    would stay in the sum until the directory is cleared. Counters of dead processes are
    kept, so totals do not go backwards while some processes restart.
    """
    directory = multiprocess_dir()
    if directory is None or not directory.is_dir():
        return []
    import psutil
    from prometheus_client import multiprocess

    dead = sorted(
        {
            int(match.group(1))
            for path in directory.glob("*.db")
            if (match := _PID_FILE.search(path.name)) and not psutil.pid_exists(int(match.group(1)))
        }
    )
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return dead
