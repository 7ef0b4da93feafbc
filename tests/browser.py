"""Headless Chromium (Debian's package) driven by Playwright, and a real web process to point it at.

Playwright never downloads a browser here: it launches the system's ``chromium``. Without it
the browser tests skip with the install command, except in CI (``PORTAL_REQUIRE_BROWSER=1``),
where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
ARTIFACTS = BASE_DIR / "test-artifacts"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"


def chromium_executable() -> str:
    """Return Debian's chromium, or skip (fail in CI) with how to install it."""
    path = shutil.which("chromium")
    if path is None:
        message = "headless Chromium is missing: apt-get install -y chromium chromium-driver"
        if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


# One Playwright per process: a second sync_playwright() cannot start while the first one's
# event loop runs, and each test module that imports the fixture gets its own instance of it.
_shared: dict[str, Any] = {}


@pytest.fixture(scope="session", name="browser")
def browser_fixture() -> Iterator[Any]:
    """A headless Chromium for the whole session (pages are opened per test)."""
    executable = chromium_executable()
    if "browser" not in _shared:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        _shared["playwright"] = playwright
        _shared["browser"] = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS, headless=True)
    yield _shared["browser"]
    if "browser" in _shared:
        _shared.pop("browser").close()
        _shared.pop("playwright").stop()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class WebPortal:
    """A Daphne process of the portal on its own data directory (SQLite, in-memory layer)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its own SQLite database and, unless ``env`` names one, the in-memory channel layer.
        self.env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
        self.env.update({"PORTAL_DATA_DIR": str(data_dir), "PORTAL_PORT": str(self.port), **(env or {})})
        self.log = data_dir / f"web-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def create_member(self, username: str) -> None:
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from accounts.roles import assign_role, MEMBERS; "
            f"u = get_user_model().objects.create_user({username!r}, {username + '@example.com'!r}, {PASSWORD!r}); "
            "assign_role(u, MEMBERS)",
        )

    def start(self, migrate: bool = True) -> None:
        if migrate:
            self.manage("migrate", "--noinput", "-v0")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *[sys.executable, "-m", "portal.daphne_server", "-b", "127.0.0.1", "-p", str(self.port)],
                    "portal.asgi:application",
                ],
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the web process did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def log_in(page: Any, base_url: str, username: str, next_path: str = "/chat/") -> None:
    """Sign in through the real login form and land on ``next_path``."""
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}", timeout=30_000)


@pytest.fixture(scope="session", name="redis_url")
def redis_url_fixture() -> Iterator[str]:
    """REDIS_URL when set (CI), else a throw-away redis-server on a free loopback port."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    server = shutil.which("redis-server")
    if server is None:
        message = "this test needs Redis: set REDIS_URL or apt-get install -y redis-server"
        if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=15)
