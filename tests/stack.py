"""The real-engine test stack: a real supervisor running the real vLLM, once per session.

``engine_stack`` (session scope) makes a temporary data dir and its own database (a fresh
PostgreSQL database when DATABASE_URL is set, else SQLite in the data dir; never
pytest-django's test database), migrates it in a subprocess, prepares the demo model
(SmolLM2-135M-Instruct, cached under ``data/models`` of the repo across sessions), creates a
small CPU engine config and starts ``manage.py runengine`` for it, then waits until the
engine is ready. At the end it stops the supervisor with SIGTERM and checks that no vLLM
process survived.

Without ``.venv-engine`` the fixture skips (``make engine`` installs it); with
PORTAL_REQUIRE_ENGINE=1 (CI) that is a failure instead.

Every test marked ``engine`` gets a timeout of :data:`ENGINE_TEST_TIMEOUT` (unless it sets
its own): whichever engine test runs first also pays for the shared engine's start-up
(preparing the demo model, loading vLLM), which on 2 busy cores can exceed the 300 s default.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
ENGINE_PYTHON = Path(os.environ.get("PORTAL_ENGINE_VENV") or BASE_DIR / ".venv-engine") / "bin" / "python"
MODELS_DIR = Path(os.environ.get("PORTAL_TEST_MODELS_DIR") or BASE_DIR / "data" / "models")
READY_TIMEOUT = float(os.environ.get("PORTAL_TEST_ENGINE_TIMEOUT", "240"))
MARK_VARIABLE = "PORTAL_ENGINE_MARK"
ENGINE_TEST_TIMEOUT = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("engine") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(ENGINE_TEST_TIMEOUT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def engine_processes(engine_name: str) -> list[int]:
    """Pids of every process of ``engine_name``'s launches (found by the mark in their environment)."""
    wanted = f"{MARK_VARIABLE}={engine_name}:".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if " Z " in stat.rsplit(")", 1)[-1][:3]:
            continue  # a zombie holds no memory and no port
        if any(item.startswith(wanted) for item in environ.split(b"\0")):
            found.append(int(entry))
    return found


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class StackDatabase:
    """The stack's own database: a separate PostgreSQL database, or SQLite in the data dir."""

    url: str | None
    admin_url: str | None = None
    name: str = ""

    @classmethod
    def create(cls, data_dir: Path) -> StackDatabase:
        base = os.environ.get("DATABASE_URL")
        if not base or not base.startswith(("postgres://", "postgresql://")):
            return cls(url=None)
        import psycopg

        name = f"portal_stack_{os.getpid()}_{secrets.token_hex(3)}"
        server = base.split("?", 1)[0].rsplit("/", 1)[0]
        admin = f"{server}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return cls(url=f"{server}/{name}", admin_url=admin, name=name)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.url is None:
            raise RuntimeError("query() needs the SQLite path; use Stack.query")
        import psycopg

        with psycopg.connect(self.url) as connection:
            return list(connection.execute(sql.replace("?", "%s"), params).fetchall())

    def drop(self) -> None:
        if self.admin_url is None:
            return
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Stack:
    """A running supervisor + vLLM with its own data dir and database."""

    data_dir: Path
    env: dict[str, str]
    database: StackDatabase
    engine_name: str
    supervisors: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    web: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # --- commands -----------------------------------------------------------------------
    def manage(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py ARGS`` against the stack; raise with its output when it fails."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the stack's database directly (SQLite or PostgreSQL)."""
        if self.database.url is not None:
            return self.database.query(sql, params)
        with contextlib.closing(sqlite3.connect(self.data_dir / "portal.sqlite3", timeout=20)) as connection:
            return list(connection.execute(sql, params).fetchall())

    def engine(self, name: str | None = None) -> dict[str, Any]:
        """Return one engine's config and state, as the supervisor last wrote them."""
        rows = self.query(
            "SELECT c.name, c.served_model_name, c.model, s.state, s.pid, s.base_url, s.api_key, "
            "s.crash_count, s.failure_kind, s.progress, c.reasoning_parser FROM inference_engineconfig c "
            "LEFT JOIN inference_enginestate s ON s.engine_id = c.id WHERE c.name = ?",
            (name or self.engine_name,),
        )
        if not rows:
            raise AssertionError(f"no engine named {name or self.engine_name}")
        keys = ("name", "served_model", "model", "state", "pid", "base_url", "api_key", "crash_count",
                "failure_kind", "progress", "reasoning_parser")  # fmt: skip
        return dict(zip(keys, rows[0], strict=True))

    @property
    def base_url(self) -> str:
        """The engine's stored address: ``unix:PATH`` (see :attr:`address` for talking to it)."""
        return str(self.engine()["base_url"])

    def address(self, name: str | None = None) -> Any:
        """The engine's :class:`~inference.engine_address.EngineAddress` (its private socket)."""
        from inference.engine_address import parse_address

        return parse_address(str(self.engine(name)["base_url"]))

    def engine_http(self, timeout: float = 30, name: str | None = None) -> httpx.Client:
        """An HTTP client straight to the engine's socket (tests only: the portal uses its own)."""
        return cast(httpx.Client, self.address(name).client(timeout=timeout))

    def engine_get(self, path: str, timeout: float = 30, **kwargs: Any) -> httpx.Response:
        """GET ``path`` from the engine directly, e.g. ``/metrics``."""
        address = self.address()
        with self.engine_http(timeout) as client:
            return client.get(address.url(path), **kwargs)

    @property
    def api_key(self) -> str:
        return str(self.engine()["api_key"])

    @property
    def served_model(self) -> str:
        return str(self.engine()["served_model"])

    # --- processes ----------------------------------------------------------------------
    def start_supervisor(self, engine_name: str | None = None) -> subprocess.Popen[bytes]:
        name = engine_name or self.engine_name
        log = (self.data_dir / f"supervisor-{name}.out").open("ab")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runengine", "--engine", name],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.supervisors[name] = process
        return process

    def stop_supervisor(self, engine_name: str | None = None, timeout: float = 90) -> int:
        process = self.supervisors.pop(engine_name or self.engine_name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def wait_for_state(self, wanted: str, name: str | None = None, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Wait until the engine is in state ``wanted``; fail early on a crash loop, with the log."""

        def check() -> dict[str, Any] | None:
            engine = self.engine(name)
            if engine["state"] == "crash_loop" and wanted != "crash_loop":
                raise AssertionError(f"engine crash loop: {engine['failure_kind']}\n{self.log_tail(name)}")
            return engine if engine["state"] == wanted else None

        try:
            return dict(wait_until(check, timeout, f"engine state {wanted}"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- engine log ---\n{self.log_tail(name)}") from None

    def log_tail(self, name: str | None = None, lines: int = 40) -> str:
        path = self.data_dir / "logs" / f"engine-{name or self.engine_name}.log"
        if not path.exists():
            return "(no engine log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start_web(self, port: int | None = None) -> tuple[str, subprocess.Popen[bytes]]:
        """Start Daphne as runportal does (portal.daphne_server) against the stack; stopped at teardown."""
        port = port or free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portal.daphne_server",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "portal.asgi:application",
            ],
            cwd=BASE_DIR,
            env=self.env,
            stdout=(self.data_dir / f"web-{port}.out").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.web.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_for_web(process, url, "the web process")
        return url, process

    def add_member(self, username: str, password: str) -> None:
        """Create ``username`` as a member in the stack's database (for logging in from a browser)."""
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from accounts.roles import assign_role, MEMBERS; "
            f"u, _ = get_user_model().objects.get_or_create(username={username!r}, "
            f"defaults={{'email': '{username}@example.com'}}); "
            f"u.set_password({password!r}); u.save(); assign_role(u, MEMBERS)",
        )

    def register_in_test_db(self, name: str | None = None) -> Any:
        """Copy the running engine (config and ready state) into pytest-django's test database.

        In-process code (``pick_engine``, WebsocketCommunicator tests) then routes to the real
        engine. Call it from a test that has database access; it refreshes the heartbeat.
        """
        from django.utils import timezone

        from inference.models import EngineConfig, EngineState

        engine = self.engine(name)
        config, _ = EngineConfig.objects.update_or_create(
            name=engine["name"],
            defaults={
                "served_model_name": engine["served_model"],
                "model": engine["model"],
                "device": EngineConfig.Device.CPU,
                "reasoning_parser": engine["reasoning_parser"],
                "desired_state": EngineConfig.Desired.RUNNING,
            },
        )
        EngineState.objects.update_or_create(
            engine=config,
            defaults={
                "state": EngineState.State.READY,
                "base_url": engine["base_url"],
                "api_key": engine["api_key"],
                "pid": engine["pid"],
                "heartbeat_at": timezone.now(),
                "supervisor_host": "engine-stack",
            },
        )
        return config

    def teardown(self) -> None:
        for process in self.web:
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=15)
            if process.poll() is None:
                process.kill()
        for name in list(self.supervisors):
            self.stop_supervisor(name)


def _require_engine() -> None:
    if ENGINE_PYTHON.exists():
        return
    message = f"the engine environment ({ENGINE_PYTHON.parent.parent}) is missing: `make engine` installs it"
    if os.environ.get("PORTAL_REQUIRE_ENGINE") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def wait_for_web(process: subprocess.Popen[Any], url: str, what: str) -> None:
    """Wait until the web process at ``url`` answers /healthz; fail at once if it exits."""

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 60, what)


def build_stack(tmp_root: Path) -> Stack:
    """Create the data dir, database, demo model and engine config (no process started yet)."""
    data_dir = tmp_root / "data"
    data_dir.mkdir(parents=True)
    database = StackDatabase.create(data_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PORTAL_DATA_DIR": str(data_dir),
            "PORTAL_ENGINE_VENV": str(ENGINE_PYTHON.parent.parent),
            "PORTAL_ENGINE_TICK_SECONDS": "0.5",
            "PORTAL_ENGINE_RESTART_BACKOFF": "1",
            "PORTAL_ENGINE_METRICS_INTERVAL": "2",
            "PORTAL_ENGINE_STOP_GRACE": "15",
            "PORTAL_REDIS_PREFIX": f"stack-{secrets.token_hex(3)}",
        }
    )
    if database.url:
        env["DATABASE_URL"] = database.url
    stack = Stack(data_dir=data_dir, env=env, database=database, engine_name=f"stack{secrets.token_hex(3)}")
    stack.manage("migrate", "--noinput", "-v0")
    stack.manage(
        "preparedemo",
        "--models-dir", str(MODELS_DIR), "--name", stack.engine_name,
        "--max-model-len", "2048", "--max-num-seqs", "8", "--cpu-kv-cache-gib", "1",
        timeout=900,
    )  # fmt: skip
    return stack


@pytest.fixture(scope="session")
def stack_base() -> Iterator[Stack]:
    """The stack's data dir, database and demo engine config, with no supervisor started yet.

    Engine fixtures start their supervisors on it (``engine_stack``, ``gptoss_engine``), so
    that engines share one database and the portal routes between them by model name. At
    the end every supervisor is stopped and no vLLM process may survive.
    """
    _require_engine()
    with tempfile.TemporaryDirectory(prefix="portal-stack-") as tmp:
        stack = build_stack(Path(tmp))
        try:
            yield stack
        finally:
            names = [stack.engine_name, *stack.supervisors]
            try:
                stack.teardown()
                leftovers = [pid for name in names for pid in engine_processes(name)]
                for pid in leftovers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                assert not leftovers, f"vLLM processes outlived the supervisor: {leftovers}"
            finally:
                stack.database.drop()


@pytest.fixture(scope="session")
def engine_stack(stack_base: Stack) -> Stack:
    """A ready demo engine under the real supervisor, shared by the whole session."""
    if stack_base.engine_name not in stack_base.supervisors:
        stack_base.start_supervisor()
    stack_base.wait_for_state("ready")
    return stack_base
