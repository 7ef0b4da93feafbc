"""GPU, CPU and memory readings of a host, and engine metrics from vLLM's /metrics.

NVML (nvidia-ml-py) is imported only when a reading is taken; a machine without an NVIDIA
driver simply has no GPUs, and the panel shows CPU and memory from psutil instead.
The supervisor records a reading of its host and one metrics sample per engine every few
seconds; samples older than ``ENGINE_METRICS_RETENTION`` are pruned.
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psutil
from django.conf import settings
from django.utils import timezone

from inference.models import EngineConfig, EngineSample, HostReading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    """One GPU: memory in bytes, utilization in percent, temperature in C, power in W."""

    index: int
    name: str
    memory_used: int
    memory_total: int
    utilization: int | None
    temperature: int | None
    power_watts: float | None
    power_limit_watts: float | None


def read_gpus() -> list[GpuReading]:
    """Read every NVIDIA GPU through NVML; an empty list when there is no driver or GPU."""
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a pinned requirement
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        return [_read_gpu(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError as exc:
        log.warning("NVML reading failed: %s", exc)
        return []
    finally:
        pynvml.nvmlShutdown()


def _read_gpu(pynvml: Any, index: int) -> GpuReading:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = pynvml.nvmlDeviceGetName(handle)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)

    def optional(read: Any) -> Any:
        # Consumer GPUs and some drivers do not report every figure.
        try:
            return read(handle)
        except pynvml.NVMLError:
            return None

    rates = optional(pynvml.nvmlDeviceGetUtilizationRates)
    temperature = optional(lambda h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
    power = optional(pynvml.nvmlDeviceGetPowerUsage)
    limit = optional(pynvml.nvmlDeviceGetEnforcedPowerLimit)
    return GpuReading(
        index=index,
        name=name.decode() if isinstance(name, bytes) else str(name),
        memory_used=int(memory.used),
        memory_total=int(memory.total),
        utilization=int(rates.gpu) if rates is not None else None,
        temperature=int(temperature) if temperature is not None else None,
        power_watts=round(power / 1000, 1) if power is not None else None,
        power_limit_watts=round(limit / 1000, 1) if limit is not None else None,
    )


def host_name() -> str:
    return socket.gethostname()


def read_host() -> dict[str, Any]:
    """Return this host's GPUs, CPU count and use, and memory (bytes)."""
    memory = psutil.virtual_memory()
    return {
        "host": host_name(),
        "gpus": [asdict(gpu) for gpu in read_gpus()],
        "cpu_count": psutil.cpu_count() or 0,
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_used": int(memory.total - memory.available),
        "memory_total": int(memory.total),
    }


def record_host() -> HostReading:
    """Store this host's reading (the supervisor calls it every few seconds)."""
    reading = read_host()
    host = reading.pop("host")
    row, _ = HostReading.objects.update_or_create(host=host, defaults={**reading, "at": timezone.now()})
    return row


def host_readings() -> list[dict[str, Any]]:
    """Return the recent readings of all engine hosts, or of this host when none is recorded."""
    fresh_after = timezone.now() - timedelta(minutes=5)
    rows = list(HostReading.objects.filter(at__gte=fresh_after))
    if rows:
        return [
            {
                "host": row.host,
                "at": row.at.isoformat(),
                "gpus": row.gpus,
                "cpu_count": row.cpu_count,
                "cpu_percent": row.cpu_percent,
                "memory_used": row.memory_used,
                "memory_total": row.memory_total,
            }
            for row in rows
        ]
    return [{**read_host(), "at": timezone.now().isoformat()}]


@dataclass(frozen=True)
class MetricsReading:
    """The figures of one /metrics scrape the portal keeps."""

    running: int
    waiting: int
    kv_cache_usage: float | None
    prompt_tokens_total: float
    generation_tokens_total: float
    preemptions_total: float = 0.0


_METRIC_LINE = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})?\s+([-+0-9.eE]+|NaN)\s*$")


def parse_metrics(text: str) -> MetricsReading:
    """Parse vLLM's Prometheus text; series of the same name (one per engine) are summed."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match and match.group(2) != "NaN":
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    usage = totals.get("vllm:kv_cache_usage_perc", totals.get("vllm:gpu_cache_usage_perc"))
    return MetricsReading(
        running=int(totals.get("vllm:num_requests_running", 0)),
        waiting=int(totals.get("vllm:num_requests_waiting", 0)),
        kv_cache_usage=usage,
        prompt_tokens_total=totals.get("vllm:prompt_tokens_total", 0.0),
        generation_tokens_total=totals.get("vllm:generation_tokens_total", 0.0),
        preemptions_total=totals.get("vllm:num_preemptions_total", 0.0),
    )


def record_sample(
    config: EngineConfig, reading: MetricsReading, previous: tuple[datetime, MetricsReading] | None
) -> EngineSample:
    """Store one sample; token rates come from the counters' growth since ``previous``."""
    now = timezone.now()
    prompt_rate = generation_rate = 0.0
    if previous is not None:
        seconds = (now - previous[0]).total_seconds()
        if seconds > 0:
            # A restarted engine starts its counters again at zero: no negative rates.
            prompt_rate = max(0.0, reading.prompt_tokens_total - previous[1].prompt_tokens_total) / seconds
            generation_rate = max(0.0, reading.generation_tokens_total - previous[1].generation_tokens_total) / seconds
    return EngineSample.objects.create(
        engine=config,
        at=now,
        running=reading.running,
        waiting=reading.waiting,
        kv_cache_usage=reading.kv_cache_usage,
        prompt_tokens_per_s=round(prompt_rate, 2),
        generation_tokens_per_s=round(generation_rate, 2),
    )


def prune_samples() -> int:
    """Delete samples older than the retention; return how many were deleted."""
    cutoff = timezone.now() - timedelta(seconds=settings.ENGINE_METRICS_RETENTION)
    deleted, _ = EngineSample.objects.filter(at__lt=cutoff).delete()
    return deleted


def recent_samples(config: EngineConfig, seconds: int = 3600) -> list[dict[str, Any]]:
    """Return the samples of the last ``seconds`` for the charts, oldest first."""
    since = timezone.now() - timedelta(seconds=seconds)
    return [
        {
            "at": sample.at.isoformat(),
            "running": sample.running,
            "waiting": sample.waiting,
            "kv_cache_usage": sample.kv_cache_usage,
            "prompt_tps": sample.prompt_tokens_per_s,
            "generation_tps": sample.generation_tokens_per_s,
        }
        for sample in config.samples.filter(at__gte=since).order_by("at")
    ]
