"""Profile the web process while it relays the stub upstream: where its CPU per token goes.

``python -m bench.profile_relay --mode api --streams 64`` builds a throw-away stack (no
engine; PostgreSQL and Redis when ``DATABASE_URL``/``REDIS_URL`` are set), starts one web
process and the stub upstream (``bench/stub_upstream.py``), and drives ``--streams``
answers at once for ``--seconds`` while ``py-spy`` samples the web process. It prints the
CPU per relayed token and the functions with the most samples (own and including callees);
``--out`` keeps py-spy's collapsed stacks (for a flame graph).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil

from bench import portal_stack, relay, stub_upstream
from bench.clients import Client, Prompt, SseClient
from bench.measure import Block, run_block, summarise


async def _drive(web_url: str, web: psutil.Process, creds: portal_stack.Credentials, args: argparse.Namespace) -> Block:
    prompt = Prompt(model=stub_upstream.MODEL, content="relay", max_tokens=args.tokens)
    limits = httpx.Limits(max_connections=args.streams * 2 + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=60), limits=limits) as http:
        clients: list[Client]
        if args.mode == "ws":
            clients = list(await relay._connect_all(web_url, creds.cookie, args.streams))
        else:
            clients = [SseClient(f"{web_url}/v1/chat/completions", creds.api_key, http) for _ in range(args.streams)]
        block = await run_block(args.mode, clients, prompt, args.per_stream, web, timeout=relay.BLOCK_TIMEOUT)
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    return block


def _top(collapsed: Path, count: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(weight)
        own[frames[-1]] += int(weight)
        for frame in set(frames):
            total[frame] += int(weight)
    lines = [f"{samples} samples", "-- own --"]
    lines += [f"{100 * n / samples:5.1f}% {name}" for name, n in own.most_common(count)]
    lines += ["-- including callees --"]
    lines += [f"{100 * n / samples:5.1f}% {name}" for name, n in total.most_common(count)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("api", "ws"), default="api")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--per-stream", type=int, default=3)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="portal-profile-") as tmp:
        stack = portal_stack.build(Path(tmp), max_num_seqs=8, engine=False)
        stub = None
        try:
            web_url, web_process = portal_stack.start_web(stack)
            stub_url, stub = portal_stack.start_process(
                [sys.executable, "-m", "bench.stub_upstream", "--rate", str(relay.RATE)], Path(tmp) / "stub.log"
            )
            portal_stack.register_stub(stack, stub_url)
            creds = portal_stack.credentials(stack)
            collapsed = args.out or Path(tmp) / "profile.txt"
            # py-spy is installed beside this interpreter (requirements-dev.txt).
            py_spy = Path(sys.executable).with_name("py-spy")
            spy = subprocess.Popen(
                [str(py_spy), "record", "--pid", str(web_process.pid), "--format", "raw", "--output", str(collapsed),
                 "--rate", "200", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)  # py-spy attaches
            block = asyncio.run(_drive(web_url, psutil.Process(web_process.pid), creds, args))
            spy.send_signal(2)
            spy.wait(timeout=60)
            row = summarise([block])
            print(f"{args.mode} {args.streams} streams: {row['output_tokens_per_s']:.0f} tok/s, "
                  f"{row['web_cpu_ms_per_1k_tokens']} ms web CPU per 1k tokens, "
                  f"{row['frames_per_s_per_stream']} frames/s/stream, "
                  f"errors {row['errors']} {row['first_error'] or ''}")  # fmt: skip
            print(_top(collapsed, args.top))
        finally:
            if stub is not None:
                stub.terminate()
            stack.teardown()
            stack.database.drop()


if __name__ == "__main__":
    main()
