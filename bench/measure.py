"""Driving one block of requests and turning samples into the report's figures."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.clients import Client, Prompt, Sample


@dataclass
class Block:
    """One mode at one concurrency in one round: its samples, wall time and the web's CPU."""

    mode: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    web_cpu: float = 0.0
    web_rss_peak: int = 0


def cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_block(
    mode: str,
    clients: Sequence[Client],
    prompt: Prompt,
    per_client: int,
    web: psutil.Process | None,
    timeout: float = 600,
) -> Block:
    """Send ``per_client`` questions on every client at once; time the whole and the web's CPU.

    A question still unanswered after ``timeout`` seconds counts as an error ("timed out").
    """
    block = Block(mode=mode, concurrency=len(clients))

    async def worker(client: Client) -> None:
        for _ in range(per_client):
            try:
                block.samples.append(await client.ask(prompt))
            except Exception as exc:  # noqa: BLE001 - a failed request is a result, not a crash
                block.samples.append(Sample(sent=time.perf_counter(), error=f"{type(exc).__name__}: {exc}"))

    async def watch_memory() -> None:
        while web is not None:
            block.web_rss_peak = max(block.web_rss_peak, web.memory_info().rss)
            await asyncio.sleep(0.25)

    cpu_before = cpu_seconds(web)
    started = time.perf_counter()
    watcher = asyncio.create_task(watch_memory())
    workers = [asyncio.create_task(worker(client)) for client in clients]
    _, late = await asyncio.wait(workers, timeout=timeout)
    for task in late:
        task.cancel()
    block.wall = time.perf_counter() - started
    answered = len(block.samples)
    block.samples += [Sample(sent=started, error="timed out") for _ in range(len(clients) * per_client - answered)]
    watcher.cancel()
    block.web_cpu = cpu_seconds(web) - cpu_before
    return block


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between the closest ranks; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def summarise(blocks: Sequence[Block]) -> dict[str, Any]:
    """One report row from every round's block of one mode and concurrency."""
    samples = [sample for block in blocks for sample in block.samples]
    good = [sample for sample in samples if sample.error is None]
    wall = sum(block.wall for block in blocks)
    tokens = sum(sample.tokens for sample in good)
    web_cpu = sum(block.web_cpu for block in blocks)
    ttfts = [t for t in (sample.ttft for sample in good) if t is not None]
    itls = [t for t in (sample.inter_token for sample in good) if t is not None]
    frame_rates = [
        sample.frames / (sample.last - sample.sent)
        for sample in good
        if sample.last is not None and sample.last > sample.sent
    ]
    return {
        "mode": blocks[0].mode,
        "concurrency": blocks[0].concurrency,
        "rounds": len(blocks),
        "requests": len(samples),
        "errors": len(samples) - len(good),
        "first_error": next((sample.error for sample in samples if sample.error), None),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
        "requests_per_s": round(len(good) / wall, 3) if wall else 0.0,
        "ttft_p50_ms": _ms(percentile(ttfts, 50)),
        "ttft_p99_ms": _ms(percentile(ttfts, 99)),
        "itl_p50_ms": _ms(percentile(itls, 50)),
        "itl_p99_ms": _ms(percentile(itls, 99)),
        "frames_per_s_per_stream": round(sum(frame_rates) / len(frame_rates), 2) if frame_rates else None,
        "bytes_per_token": round(sum(sample.bytes for sample in good) / tokens, 1) if tokens else None,
        "web_cpu_ms_per_1k_tokens": round(web_cpu * 1000 / tokens * 1000, 1) if tokens else None,
        "web_rss_peak_mb": round(max(block.web_rss_peak for block in blocks) / 2**20, 1),
    }


def add_ratios(rows: list[dict[str, Any]], baseline: str = "direct") -> None:
    """Set ``ratio_to_direct`` and the TTFT added over direct on every row, in place."""
    base = {row["concurrency"]: row for row in rows if row["mode"] == baseline}
    for row in rows:
        direct = base.get(row["concurrency"])
        if direct is None or not direct["output_tokens_per_s"]:
            row["ratio_to_direct"] = None
            continue
        row["ratio_to_direct"] = round(row["output_tokens_per_s"] / direct["output_tokens_per_s"], 3)
        for key in ("ttft_p50_ms", "ttft_p99_ms"):
            added = None if row[key] is None or direct[key] is None else round(row[key] - direct[key], 2)
            row[key.replace("ttft_", "ttft_added_")] = added
