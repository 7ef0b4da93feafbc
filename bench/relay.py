"""The relay ceiling: what one web process passes on from an upstream that is never the limit.

The stub upstream (``bench/stub_upstream.py``, a separate process) is registered as a ready
engine; it streams one token per SSE chunk at ``RATE`` tokens/s per stream. At 64, 256 and
1,000 concurrent streams the benchmark reads it directly (the baseline: what the upstream and
one client deliver), then through the portal's ``/v1`` API and chat socket, and records the
tokens/s relayed, the frames each stream got per second, the web process's CPU per 1,000
tokens and its memory per stream (peak RSS during the block over RSS before it, per stream).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import httpx
import psutil

from bench import portal_stack, stub_upstream
from bench.clients import ChatSocketClient, Client, Prompt, SseClient
from bench.measure import Block, add_ratios, run_block, summarise
from tests.stack import Stack

# 125 tokens/s per stream asks 32,000 tokens/s of the relay at 256 streams (the target is 30,000).
RATE = 125.0
# An answer takes tokens/RATE seconds (3.2 s): far longer means frames were lost or the relay drowned.
BLOCK_TIMEOUT = 90.0


async def _connect_all(web_url: str, cookie: str, count: int) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, count, 50):  # in batches: a thousand handshakes at once time out
        size = min(50, count - start)
        batch = await asyncio.gather(*(ChatSocketClient.connect(web_url, cookie) for _ in range(size)))
        clients.extend(batch)
    return clients


async def _drive(web_url: str, web_pid: int, stub_url: str, creds: portal_stack.Credentials,
                 streams: Sequence[int], tokens: int) -> list[dict[str, Any]]:  # fmt: skip
    web = psutil.Process(web_pid)
    prompt = Prompt(model=stub_upstream.MODEL, content="relay", max_tokens=tokens)
    limits = httpx.Limits(max_connections=max(streams) * 2 + 10, max_keepalive_connections=max(streams) + 10)
    rows = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=60), limits=limits) as http:
        for count in streams:
            for mode in ("direct", "api", "ws"):
                if mode == "ws":
                    clients = await _connect_all(web_url, creds.cookie, count)
                else:
                    base, key = (stub_url, stub_upstream.API_KEY) if mode == "direct" else (web_url, creds.api_key)
                    clients = [SseClient(f"{base}/v1/chat/completions", key, http) for _ in range(count)]
                rss_before = web.memory_info().rss
                block: Block = await run_block(mode, clients, prompt, 1, web, timeout=BLOCK_TIMEOUT)
                await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
                row = summarise([block])
                row["web_memory_kib_per_stream"] = round(max(0, block.web_rss_peak - rss_before) / 1024 / count, 1)
                row["upstream_rate_per_stream"] = RATE
                rows.append(row)
                print(f"relay {count:>5} streams {mode:<6} {row['output_tokens_per_s']:>9.0f} tok/s "
                      f"errors {row['errors']} {row['first_error'] or ''}", flush=True)  # fmt: skip
    add_ratios(rows)
    return rows


def measure(stack: Stack, web_url: str, web_pid: int, streams: Sequence[int], tokens: int) -> list[dict[str, Any]]:
    """Register the stub upstream, drive every stream count through every path; return the rows."""
    if not streams:
        return []
    log = stack.data_dir / "stub-upstream.log"
    stub_url, process = portal_stack.start_process(
        [sys.executable, "-m", "bench.stub_upstream", "--rate", str(RATE)], log
    )
    try:
        portal_stack.register_stub(stack, stub_url)
        return asyncio.run(_drive(web_url, web_pid, stub_url, portal_stack.credentials(stack), streams, tokens))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
