"""The supervisor's reconcile loop: a hung engine is a crash, crashes are counted and admins are told.

The first test runs a real guarded process through the real supervisor: a few lines of
Python standing in for vLLM (a progress bar drawn with carriage returns, then /health on its
socket). The others drive the reconcile loop with a fake process, to walk through crash
streaks quickly. The real vLLM engine is covered by tests/test_engine_real.py.
"""

from __future__ import annotations

import http.server
import secrets
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from inference import supervisor as supervisor_module
from inference.engine_address import parse_address
from inference.engine_process import LaunchOutput
from inference.launch_command import MARK_VARIABLE, Launch
from inference.models import EngineConfig, EngineState
from inference.status import describe
from inference.supervisor import Supervisor

pytestmark = [pytest.mark.django_db]
State = EngineState.State
LOGS = Path(__file__).resolve().parent / "data" / "vllm-logs"

# Stands in for vLLM: reports where it runs and what it was given, draws a progress bar
# without a newline (a drawing is complete when the next one starts), serves /health on its
# Unix socket (as vLLM's --uds) once told to, and stops answering once told to.
FAKE_ENGINE = r"""
import http.server, os, pathlib, socketserver, sys, time
path, folder = sys.argv[1], pathlib.Path(sys.argv[2])
print("cwd", os.getcwd(), flush=True)
print("env", " ".join(sorted(os.environ)), flush=True)
for done in range(3):  # as tqdm draws: each drawing starts with a carriage return
    sys.stdout.write(f"\rLoading safetensors checkpoint shards: {done * 50}% Completed | {done}/2")
    sys.stdout.flush()
while not (folder / "serve").exists():
    time.sleep(0.05)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and (folder / "hang").exists():
            time.sleep(600)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

Server(path, Handler).serve_forever()
"""


class StrangerHandler(http.server.BaseHTTPRequestHandler):
    """Answers 200 to everything, as a process that grabbed the engine's address would."""

    server: Any

    def do_GET(self) -> None:
        self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def address_string(self) -> str:
        return "stranger"

    def log_message(self, *args: Any) -> None:
        pass


class StrangerOnSocket(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stranger (here: the test process, not the supervisor's child) listening on the engine's socket."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.requests = 0
        self.connections = threading.Semaphore(0)
        super().__init__(path, StrangerHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections.release()
        return True


def fake_vllm(folder: Path) -> Callable[..., Launch]:
    """A build_launch that starts FAKE_ENGINE on the launch's socket."""

    def launch(config: EngineConfig, python: Path, api_key: str, mark: str, *, socket: Path) -> Launch:
        argv = [sys.executable, "-c", FAKE_ENGINE, str(socket), str(folder)]
        return Launch(argv=argv, env={"VLLM_API_KEY": api_key, MARK_VARIABLE: mark}, fingerprint="fake")

    return launch


def startup_lines() -> list[str]:
    """A real vLLM start-up up to the weights, with its warning that max model length is too long."""
    lines = (LOGS / "kv-cache-too-small.log").read_text().splitlines()
    end = next(index for index, line in enumerate(lines) if "Loading weights took" in line)
    return [*lines[: end + 1], "(APIServer pid=1) INFO [launcher.py:46] Application startup complete."]


def engine_config(**fields: Any) -> EngineConfig:
    defaults = {
        "name": f"e{secrets.token_hex(4)}",
        "served_model_name": "fake",
        "model": "/srv/models/fake",
        "desired_state": EngineConfig.Desired.RUNNING,
    }
    return EngineConfig.objects.create(**{**defaults, **fields})


def state_of(config: EngineConfig) -> EngineState:
    return EngineState.objects.get(pk=config.pk)


def tick_until(boss: Supervisor, config: EngineConfig, wanted: Callable[[EngineState], bool], what: str) -> EngineState:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        boss.tick()
        state = state_of(config)
        if wanted(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last state {state.state}: {state.message}")


@pytest.fixture
def boss(settings: Any, tmp_path: Path) -> Iterator[Supervisor]:
    settings.ENGINE_LOG_DIR = tmp_path / "logs"
    settings.ENGINE_STOP_GRACE = 2.0
    with tempfile.TemporaryDirectory(prefix="pe-") as short:  # pytest's tmp_path is too long for a socket
        settings.ENGINE_SOCKET_DIR = Path(short) / "run"
        supervisor = Supervisor()
        yield supervisor
        for runner in supervisor.runners.values():
            if runner.process is not None:
                runner.process.stop()
        supervisor.close_clients()


def test_a_hung_engine_is_stopped_counted_as_a_crash_and_the_admins_are_told(
    boss: Supervisor, adam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mailoutbox: list[Any]
) -> None:
    monkeypatch.setattr(supervisor_module, "STARTING_HEALTH_INTERVAL", 0.1)
    monkeypatch.setattr(supervisor_module, "READY_HEALTH_INTERVAL", 0.1)
    monkeypatch.setattr(supervisor_module, "READY_HEALTH_TIMEOUT", 0.5)
    monkeypatch.setattr(supervisor_module, "HEALTH_FAILURES", 2)
    monkeypatch.setenv("DATABASE_URL", "postgres://portal:secret@db.example/portal")
    config = engine_config()
    monkeypatch.setattr(supervisor_module, "build_launch", fake_vllm(tmp_path))

    loading = tick_until(boss, config, lambda state: state.state == State.LOADING, "the progress bar")
    assert loading.progress == pytest.approx(0.475), "each drawing of the bar counts before any newline"
    (tmp_path / "serve").touch()
    tick_until(boss, config, lambda state: state.state == State.READY, "ready")
    process = boss.runners[config.pk].process
    assert process is not None
    lines = process.output.recent(10)
    assert f"cwd {tmp_path / 'logs'}" in lines, "vLLM runs in the log directory, not in the repository"
    environment = next(line for line in lines if line.startswith("env ")).split()
    assert {"PATH", "VLLM_API_KEY"} <= set(environment)
    assert "DATABASE_URL" not in environment

    (tmp_path / "hang").touch()
    crashed = tick_until(boss, config, lambda state: state.state == State.CRASHED, "the hang to be noticed")
    assert crashed.failure_kind == "unresponsive"
    assert "stopped answering /health" in crashed.diagnosis
    assert crashed.crash_count == 1
    assert crashed.next_retry_at is not None
    assert process.poll() is not None, "the hung process was stopped"
    assert boss.runners[config.pk].process is None
    config.refresh_from_db()
    assert describe(config).message == "engine restarting after a crash — an admin has been told"
    assert [mail.to for mail in mailoutbox] == [["adam@example.com"]]
    assert config.name in mailoutbox[0].subject
    assert "stopped answering /health" in mailoutbox[0].body


def test_a_stranger_on_the_engines_socket_does_not_make_it_ready(
    boss: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor_module, "STARTING_HEALTH_INTERVAL", 0.05)
    monkeypatch.setattr(supervisor_module, "build_launch", fake_vllm(tmp_path))
    config = engine_config()
    boss.tick()  # the launch: the stand-in draws its bar and waits before it listens
    socket_path = parse_address(state_of(config).base_url).socket_path
    assert Path(socket_path).parent == Path(settings.ENGINE_SOCKET_DIR)
    on_socket = StrangerOnSocket(socket_path)
    threading.Thread(target=on_socket.serve_forever, daemon=True).start()
    try:
        probes = 0
        while probes < 3:  # the supervisor found a listener on the socket three times
            boss.tick()
            assert state_of(config).state != State.READY
            probes += on_socket.connections.acquire(timeout=2)
        assert on_socket.requests == 0, "a listener that is not our engine's process is not even asked"
    finally:
        on_socket.shutdown()
        on_socket.server_close()
    Path(socket_path).unlink()
    (tmp_path / "serve").touch()  # now our own process listens on the socket
    tick_until(boss, config, lambda state: state.state == State.READY, "ready")


class FakeProcess:
    """An engine launch without a process: it prints a real start-up, then exits when told."""

    launches: list[FakeProcess] = []

    def __init__(self, name: str, launch: Launch) -> None:
        self.output = LaunchOutput()
        self.vllm_pid = 4242
        self.exit_code: int | None = None
        self.vllm_gone = False
        for line in startup_lines():
            self.output.add(line)
        FakeProcess.launches.append(self)

    @property
    def progress(self) -> float | None:
        return self.output.progress

    def poll(self) -> int | None:
        return self.exit_code

    def vllm_exited(self) -> bool:
        return self.vllm_gone or self.exit_code is not None

    def stop(self) -> int:
        self.exit_code = 143 if self.exit_code is None else self.exit_code
        return self.exit_code


@pytest.fixture
def healthy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the fake engines' /health answers (the last value of the list)."""
    answers = [True]
    monkeypatch.setattr(Supervisor, "_healthy", lambda self, process, base_url, timeout=0.0: answers[-1])
    return answers


@pytest.fixture
def fake_engines(
    boss: Supervisor, settings: Any, monkeypatch: pytest.MonkeyPatch, healthy: list[bool]
) -> type[FakeProcess]:
    settings.ENGINE_MAX_CRASHES = 2
    settings.ENGINE_RESTART_BACKOFF = 0.01
    settings.ENGINE_RESTART_BACKOFF_MAX = 0.01
    FakeProcess.launches = []
    monkeypatch.setattr(supervisor_module, "STARTING_HEALTH_INTERVAL", 0.0)
    monkeypatch.setattr(supervisor_module, "EngineProcess", FakeProcess)
    monkeypatch.setattr(supervisor_module, "READY_HEALTH_INTERVAL", 0.0)
    monkeypatch.setattr(supervisor_module, "HEALTH_FAILURES", 2)
    monkeypatch.setattr(Supervisor, "_scrape", lambda self, *args: None)
    return FakeProcess


def test_a_crash_after_ready_is_read_from_the_lines_since_ready(
    boss: Supervisor, fake_engines: type[FakeProcess], adam: Any, mailoutbox: list[Any]
) -> None:
    config = engine_config(max_model_len=100000)
    tick_until(boss, config, lambda state: state.state == State.READY, "ready")
    fake_engines.launches[-1].exit_code = 137  # the OOM killer: no message at all
    crashed = tick_until(boss, config, lambda state: state.state == State.CRASHED, "the crash")
    assert crashed.failure_kind == "killed", "the start-up's max-model-len warning does not explain it"
    assert "SIGKILL" in crashed.diagnosis
    assert crashed.last_exit_code == 137


def test_admins_are_mailed_on_the_first_crash_and_on_the_crash_loop_only(
    boss: Supervisor, fake_engines: type[FakeProcess], adam: Any, alice: Any, mailoutbox: list[Any]
) -> None:
    config = engine_config()
    for crash in (1, 2):
        tick_until(boss, config, lambda state: state.state == State.READY, f"ready before crash {crash}")
        fake_engines.launches[-1].output.add("RuntimeError: something odd happened")
        fake_engines.launches[-1].exit_code = 1
        boss.tick()
    looped = state_of(config)
    assert looped.state == State.CRASH_LOOP
    assert looped.crash_count == 2
    assert looped.failure_kind == "error"
    config.refresh_from_db()
    assert describe(config).message == "engine failed repeatedly and was stopped — an admin has been told"
    assert len(mailoutbox) == 2, "the second crash of the streak is the crash loop, mailed once"
    assert all(mail.to == ["adam@example.com"] for mail in mailoutbox), "members are not mailed"
    assert "failed 2 times in a row" in mailoutbox[1].body


def test_a_crash_without_any_admin_address_is_only_logged(
    boss: Supervisor, fake_engines: type[FakeProcess], mailoutbox: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    config = engine_config()
    tick_until(boss, config, lambda state: state.state == State.READY, "ready")
    fake_engines.launches[-1].exit_code = 1
    tick_until(boss, config, lambda state: state.state == State.CRASHED, "the crash")
    assert mailoutbox == []
    assert any(record.levelname == "ERROR" and config.name in record.getMessage() for record in caplog.records)


def test_a_dead_engine_whose_guard_is_still_cleaning_up_is_a_crash_not_a_hang(
    boss: Supervisor, fake_engines: type[FakeProcess], healthy: list[bool]
) -> None:
    config = engine_config()
    tick_until(boss, config, lambda state: state.state == State.READY, "ready")
    launch = fake_engines.launches[-1]
    launch.vllm_gone = True  # vLLM was SIGKILLed; its engine core takes a while to stop
    healthy.append(False)
    for _ in range(5):
        boss.tick()
    assert state_of(config).state == State.READY, "no verdict before the guard reports the exit"
    launch.exit_code = 137
    crashed = tick_until(boss, config, lambda state: state.state == State.CRASHED, "the crash")
    assert crashed.failure_kind == "killed"
