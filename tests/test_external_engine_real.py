"""A second real vLLM, started by the test itself, registered as an external engine.

The stack's supervisor runs the managed demo engine; this module starts another ``vllm serve``
of the same demo model on a free loopback port with its own ``--api-key`` (not through our
supervisor), registers it with ``manage.py engine add-external`` and starts a supervisor that
probes it. Then: it becomes ready and answers a chat; under concurrency both engines receive
requests (read from each vLLM's own ``vllm:request_success_total``); a wrong key and a web
server that is not vLLM each get their state and message; and when it is killed mid-answer the
stream fails with the same error as a crash, its state turns unreachable within the probe
interval, and new requests go to the managed engine. The probe interval and the failover time
are written to test-artifacts/external-failover.txt.

Routing in this process reads pytest-django's database: :func:`mirror` copies the engines'
rows as the supervisors last wrote them in the stack's database (like
``Stack.register_in_test_db``), re-encrypting the key under this process's SECRET_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from inference.engine_address import parse_address
from inference.engine_client import ChatRequest, EngineError, stream_chat
from inference.engine_router import pick_engine
from inference.engine_secrets import encrypt_api_key
from inference.models import EngineConfig, EngineState
from tests.browser import ARTIFACTS
from tests.chat_socket import chat_socket, frames_until, loop_cleaned_up  # noqa: F401 - fixture
from tests.external_servers import plain_web_server
from tests.stack import ENGINE_PYTHON, READY_TIMEOUT, Stack, free_port, wait_until

# A second vLLM of its own, started and killed: process supervision, run once per CI.
pytestmark = [pytest.mark.engine, pytest.mark.process_lifecycle]

PROBE_SECONDS = 5.0  # PORTAL_EXTERNAL_ENGINE_PROBE_SECONDS's default, which the stack keeps


@dataclass
class SecondVllm:
    name: str
    url: str
    key: str
    key_file: Path
    process: subprocess.Popen[bytes]
    killed_at: float = 0.0

    def kill(self) -> None:
        """SIGKILL the whole server (API server and engine core share its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.killed_at = time.monotonic()
        self.process.wait(timeout=30)


def requests_served(address: str) -> float:
    """vLLM's own count of finished requests (``vllm:request_success_total``, all reasons).

    ``address`` is an engine's stored address: the external engine's URL or the managed one's socket.
    """
    engine = parse_address(address)
    with engine.client(timeout=10) as client:
        text = client.get(engine.url("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))  # fmt: skip


@pytest.fixture(scope="module")
def second_vllm(engine_stack: Stack) -> Iterator[SecondVllm]:
    model = engine_stack.engine()["model"]
    port, key = free_port(), secrets.token_urlsafe(24)
    key_file = engine_stack.data_dir / "second-vllm.key"
    key_file.write_text(key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL", "PYTEST"))}
    env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [str(ENGINE_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
         "--served-model-name", engine_stack.served_model, "--host", "127.0.0.1", "--port", str(port),
         "--api-key", key, "--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "8",
         "--enforce-eager", "--disable-uvicorn-access-log"],
        env=env, stdout=(engine_stack.data_dir / "second-vllm.log").open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    server = SecondVllm(name=f"ext{secrets.token_hex(3)}", url=f"http://127.0.0.1:{port}", key=key,
                        key_file=key_file, process=process)  # fmt: skip
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                log = (engine_stack.data_dir / "second-vllm.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"the second vLLM exited with {process.returncode}:\n{log}")
            try:
                return httpx.get(f"{server.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, READY_TIMEOUT, "the second vLLM", interval=1)
        added = engine_stack.manage(
            "engine", "add-external", server.name, "--url", server.url, "--api-key-file", str(key_file)
        )
        assert f"Probed now: ready, serving {engine_stack.served_model}" in added.stdout
        engine_stack.start_supervisor(server.name)
        yield server
    finally:
        server.kill()
        if server.name in engine_stack.supervisors:
            engine_stack.stop_supervisor(server.name)


def mirror(stack: Stack, keys: dict[str, str]) -> None:
    """Make the test database hold exactly the engines named in ``keys``, as the stack has them."""
    rows = stack.query(
        "SELECT c.name, c.kind, c.url, c.served_model_name, c.model, s.state, s.base_url, s.api_key, "
        "s.served_models, s.running_requests, s.waiting_requests FROM inference_engineconfig c "
        "JOIN inference_enginestate s ON s.engine_id = c.id"
    )
    EngineConfig.objects.exclude(name__in=list(keys)).delete()
    for name, kind, url, served, model, state, base_url, api_key, models, running, waiting in rows:
        if name not in keys:
            continue
        external = kind == EngineConfig.Kind.EXTERNAL
        config, _ = EngineConfig.objects.update_or_create(
            name=name,
            defaults={"kind": kind, "url": url, "served_model_name": served, "model": model,
                      "desired_state": "running", "api_key_encrypted": encrypt_api_key(keys[name]) if external else ""},
        )  # fmt: skip
        EngineState.objects.update_or_create(
            engine=config,
            defaults={"state": state, "base_url": base_url, "api_key": api_key, "running_requests": running,
                      "waiting_requests": waiting, "heartbeat_at": timezone.now(), "supervisor_host": "engine-stack",
                      "served_models": json.loads(models) if isinstance(models, str) else models},
        )  # fmt: skip


async def read_and_kill(request: ChatRequest, target: Any, server: SecondVllm) -> None:
    """Read the answer; once some text has arrived, kill the engine (the stream must then fail)."""
    received = ""
    async for delta in stream_chat(request, target):
        received += delta.content
        if len(received) > 20 and server.process.poll() is None:
            await asyncio.to_thread(server.kill)


async def ask(model: str, max_tokens: int = 16) -> tuple[str, str]:
    """Route one request as the generation service does and read the whole answer: (engine, text)."""
    target = await database_sync_to_async(pick_engine)(model)
    request = ChatRequest(messages=[{"role": "user", "content": "Say hello."}], max_tokens=max_tokens, temperature=0)
    return target.name, "".join([delta.content async for delta in stream_chat(request, target)])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_second_real_vllm_registered_as_external_becomes_ready_and_answers_a_chat(
    alice: Any, engine_stack: Stack, second_vllm: SecondVllm
) -> None:
    engine = await asyncio.to_thread(engine_stack.wait_for_state, "ready", second_vllm.name, 60)
    assert engine["base_url"] == second_vllm.url
    status = await asyncio.to_thread(engine_stack.manage, "engine", "status")
    assert f"ready, serving {engine_stack.served_model}" in status.stdout
    await database_sync_to_async(mirror)(engine_stack, {second_vllm.name: second_vllm.key})
    before = requests_served(second_vllm.url)
    socket = await chat_socket(alice)
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": "What is the capital of France?",
                               "params": {"temperature": 0, "max_tokens": 30}})  # fmt: skip
    frames = await frames_until(socket, "done", timeout=120)
    assert frames[-1]["status"] == "complete"
    assert "Paris" in "".join(frame["content"] for frame in frames if frame["type"] == "delta")
    assert requests_served(second_vllm.url) == before + 1
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_managed_and_the_external_engine_share_the_load(engine_stack: Stack, second_vllm: SecondVllm) -> None:
    await asyncio.to_thread(engine_stack.wait_for_state, "ready", second_vllm.name, 60)

    def idle() -> bool:  # the supervisors' samples of the previous test's requests have passed
        loads = engine_stack.query("SELECT running_requests + waiting_requests FROM inference_enginestate")
        return all(load == 0 for (load,) in loads)

    await asyncio.to_thread(wait_until, idle, 30, "both engines idle")
    await database_sync_to_async(mirror)(
        engine_stack, {engine_stack.engine_name: "", second_vllm.name: second_vllm.key}
    )
    managed_before, external_before = requests_served(engine_stack.base_url), requests_served(second_vllm.url)
    answers = await asyncio.gather(*(ask(engine_stack.served_model) for _ in range(12)))
    assert all(text for _, text in answers)
    picked = {name for name, _ in answers}
    assert picked == {engine_stack.engine_name, second_vllm.name}
    assert requests_served(engine_stack.base_url) > managed_before
    assert requests_served(second_vllm.url) > external_before


@pytest.mark.django_db
def test_a_wrong_key_and_a_server_that_is_not_vllm_get_their_state_and_message(
    engine_stack: Stack, second_vllm: SecondVllm, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key")
    bad, web = f"{second_vllm.name}-badkey", f"{second_vllm.name}-web"
    engine_stack.manage("engine", "add-external", bad, "--url", second_vllm.url, "--api-key-file", str(wrong))
    with plain_web_server(tmp_path) as url:
        engine_stack.manage("engine", "add-external", web, "--url", url)
        try:
            for name in (bad, web):
                engine_stack.start_supervisor(name)
            engine_stack.wait_for_state("unauthorized", bad, timeout=30)
            engine_stack.wait_for_state("incompatible", web, timeout=30)
            status = engine_stack.manage("engine", "status").stdout
            doctor = engine_stack.manage("doctor", check=False).stdout
        finally:
            for name in (bad, web):
                engine_stack.stop_supervisor(name)
                engine_stack.manage("engine", "remove", name)
    refused = "The engine refused the portal's API key (HTTP 401 from /v1/models)."
    not_openai = "Not an OpenAI-compatible server: GET /v1/models answered HTTP 404."
    assert refused in status
    assert not_openai in status
    assert refused in doctor
    assert not_openai in doctor


@pytest.mark.django_db(transaction=True)
async def test_a_killed_external_engine_fails_clearly_turns_unreachable_and_requests_go_to_the_managed_one(
    engine_stack: Stack, second_vllm: SecondVllm
) -> None:
    await asyncio.to_thread(engine_stack.wait_for_state, "ready", second_vllm.name, 60)
    await database_sync_to_async(mirror)(engine_stack, {second_vllm.name: second_vllm.key})
    target = await database_sync_to_async(pick_engine)(engine_stack.served_model)
    assert target.name == second_vllm.name
    request = ChatRequest(messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
                          max_tokens=1500, temperature=0)  # fmt: skip
    with pytest.raises(EngineError) as caught:
        await read_and_kill(request, target, second_vllm)
    killed_at = second_vllm.killed_at
    assert caught.value.code == "engine_disconnected"
    assert caught.value.message in (
        f"the engine {second_vllm.name} dropped the stream",
        f"the engine {second_vllm.name} ended the stream before the answer was complete",
    )
    engine = await asyncio.to_thread(engine_stack.wait_for_state, "unreachable", second_vllm.name, PROBE_SECONDS + 10)
    failover = time.monotonic() - killed_at
    assert failover <= PROBE_SECONDS + 2.0, f"unreachable only after {failover:.1f} s"
    assert engine["failure_kind"] == "unreachable"
    await database_sync_to_async(mirror)(
        engine_stack, {engine_stack.engine_name: "", second_vllm.name: second_vllm.key}
    )
    managed_before = requests_served(engine_stack.base_url)
    answers = await asyncio.gather(*(ask(engine_stack.served_model) for _ in range(4)))
    assert {name for name, _ in answers} == {engine_stack.engine_name}
    assert requests_served(engine_stack.base_url) == managed_before + 4
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "external-failover.txt").write_text(
        f"probe interval: {PROBE_SECONDS:g} s (PORTAL_EXTERNAL_ENGINE_PROBE_SECONDS default)\n"
        f"external engine killed mid-answer -> state unreachable after {failover:.1f} s; "
        "the next requests went to the managed engine\n"
    )
