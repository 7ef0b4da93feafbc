"""The engines on ``/metrics``: states and restarts from the database, vLLM's own figures, GPUs.

Read at scrape time (registered with :func:`portal.metrics.register_collector`), so every
web process reports the same values and nothing is counted twice. Engine series carry an
``engine`` label; GPU series carry ``host`` and ``gpu``, and ``portal_engine_info`` maps each
engine to its host, so a dashboard can join the two (``* on(host) group_left(engine)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from inference import telemetry
from inference.engine_address import EngineAddress, engine_address
from inference.models import EngineConfig, EngineState, HostReading
from inference.status import describe, supervisor_alive

# A scrape must answer even when an engine hangs; Prometheus' own timeout is 10 s by default.
ENGINE_SCRAPE_TIMEOUT = 2.0
STATES = [value for value, _ in EngineState.State.choices]


def read_engine_metrics(address: EngineAddress) -> telemetry.MetricsReading | None:
    """Read one engine's vLLM ``/metrics``; None when it does not answer in time."""
    try:
        with address.client(timeout=ENGINE_SCRAPE_TIMEOUT) as client:
            response = client.get(address.url("/metrics"))
            response.raise_for_status()
    except (httpx.HTTPError, OSError):
        return None
    return telemetry.parse_metrics(response.text)


class EngineCollector:
    """Collects every configured engine's state and figures, and each engine host's GPUs."""

    def collect(self) -> Iterator[Metric]:
        engine = ["engine"]
        info = GaugeMetricFamily(
            "portal_engine_info", "An engine: its model, host and device.", labels=["engine", "model", "host", "device"]
        )
        state_family = GaugeMetricFamily(
            "portal_engine_state",
            "1 for the engine's current state (stopped when no supervisor reports).",
            labels=[*engine, "state"],
        )
        desired = GaugeMetricFamily(
            "portal_engine_desired_running", "1 when an admin wants the engine running.", labels=engine
        )
        crashes = GaugeMetricFamily(
            "portal_engine_consecutive_crashes", "Crashes since the engine last ran stably.", labels=engine
        )
        launched = GaugeMetricFamily(
            "portal_engine_launched_timestamp_seconds",
            "When the current launch started (Unix time); changes() over it counts restarts.",
            labels=engine,
        )
        heartbeat = GaugeMetricFamily(
            "portal_engine_supervisor_heartbeat_age_seconds",
            "Seconds since the engine's supervisor last reported.",
            labels=engine,
        )
        progress = GaugeMetricFamily(
            "portal_engine_load_progress_ratio", "Model loading progress, 0 to 1.", labels=engine
        )
        up = GaugeMetricFamily(
            "portal_engine_metrics_up", "1 when the engine's vLLM /metrics answered this scrape.", labels=engine
        )
        running = GaugeMetricFamily("portal_engine_requests_running", "vllm:num_requests_running.", labels=engine)
        waiting = GaugeMetricFamily("portal_engine_requests_waiting", "vllm:num_requests_waiting.", labels=engine)
        kv_cache = GaugeMetricFamily(
            "portal_engine_kv_cache_usage_ratio", "vllm:kv_cache_usage_perc (0 to 1).", labels=engine
        )
        preemptions = CounterMetricFamily(
            "portal_engine_preemptions", "vllm:num_preemptions_total (since the engine's launch).", labels=engine
        )
        now = timezone.now()
        for config in EngineConfig.objects.select_related("state").order_by("name"):
            state: EngineState | None = getattr(config, "state", None)
            view = describe(config)
            name = [config.name]
            host = state.supervisor_host if state is not None else ""
            info.add_metric([config.name, view.served_model, host, config.device], 1)
            for value in STATES:
                state_family.add_metric([config.name, value], 1 if view.state == value else 0)
            desired.add_metric(name, 1 if config.desired_state == EngineConfig.Desired.RUNNING else 0)
            if state is None:
                continue
            crashes.add_metric(name, state.crash_count)
            if state.launched_at is not None:
                launched.add_metric(name, state.launched_at.timestamp())
            if state.heartbeat_at is not None:
                heartbeat.add_metric(name, (now - state.heartbeat_at).total_seconds())
            if view.progress is not None:
                progress.add_metric(name, view.progress)
            reading = None
            if view.state == EngineState.State.READY and config.is_external:
                # A web process never calls an external engine for this: the probe's last figures.
                running.add_metric(name, state.running_requests)
                waiting.add_metric(name, state.waiting_requests)
            elif view.state == EngineState.State.READY and supervisor_alive(state):
                address = engine_address(config)
                reading = read_engine_metrics(address) if address is not None else None
            up.add_metric(name, 1 if reading is not None else 0)
            if reading is not None:
                running.add_metric(name, reading.running)
                waiting.add_metric(name, reading.waiting)
                if reading.kv_cache_usage is not None:
                    kv_cache.add_metric(name, reading.kv_cache_usage)
                preemptions.add_metric(name, reading.preemptions_total)
        yield from (info, state_family, desired, crashes, launched, heartbeat, progress, up)
        yield from (running, waiting, kv_cache, preemptions)
        yield from _gpu_families(now - timedelta(minutes=5))


def _gpu_families(fresh_after: datetime) -> Iterator[Metric]:
    """GPU telemetry of every engine host, as its supervisor last recorded it."""
    labels = ["host", "gpu", "name"]
    used = GaugeMetricFamily("portal_gpu_memory_used_bytes", "GPU memory in use.", labels=labels)
    total = GaugeMetricFamily("portal_gpu_memory_total_bytes", "GPU memory in all.", labels=labels)
    utilization = GaugeMetricFamily("portal_gpu_utilization_ratio", "GPU busy share, 0 to 1.", labels=labels)
    temperature = GaugeMetricFamily("portal_gpu_temperature_celsius", "GPU temperature.", labels=labels)
    power = GaugeMetricFamily("portal_gpu_power_watts", "GPU power draw.", labels=labels)
    for row in HostReading.objects.filter(at__gte=fresh_after):
        for gpu in row.gpus:
            key = [row.host, str(gpu.get("index", "")), str(gpu.get("name", ""))]
            used.add_metric(key, gpu.get("memory_used") or 0)
            total.add_metric(key, gpu.get("memory_total") or 0)
            if gpu.get("utilization") is not None:
                utilization.add_metric(key, gpu["utilization"] / 100)
            if gpu.get("temperature") is not None:
                temperature.add_metric(key, gpu["temperature"])
            if gpu.get("power_watts") is not None:
                power.add_metric(key, gpu["power_watts"])
    yield from (used, total, utilization, temperature, power)
