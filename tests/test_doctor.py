"""`manage.py doctor` names the usual reasons the page does not open."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from portal import doctor

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def findings_by_check(**kwargs) -> dict[str, doctor.Finding]:
    return {finding.check: finding for finding in doctor.run_checks(**kwargs)}


def test_a_port_taken_by_another_program_fails_with_the_fix(db, settings):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        settings.PORTAL_PORT = squatter.getsockname()[1]
        finding = findings_by_check()["port"]
    assert finding.status == doctor.FAIL
    assert "taken by another program" in finding.detail
    assert "PORTAL_PORT" in finding.fix


def test_a_loopback_binding_is_pointed_out(db, settings):
    settings.PORTAL_HOST = "127.0.0.1"
    finding = findings_by_check()["bind address"]
    assert finding.status == doctor.WARN
    assert "this machine only" in finding.detail


def test_a_missing_model_folder_fails(db, tmp_path):
    from inference.models import EngineConfig

    EngineConfig.objects.create(name="lost", served_model_name="lost", model=str(tmp_path / "nowhere"))
    finding = findings_by_check()["engine lost"]
    assert finding.status == doctor.FAIL
    assert "does not exist" in finding.detail


def test_the_command_exits_non_zero_when_a_check_fails(db, settings, capsys):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        settings.PORTAL_PORT = squatter.getsockname()[1]
        with pytest.raises(CommandError, match="port"):
            call_command("doctor")
    assert "FAIL" in capsys.readouterr().out


@pytest.fixture(scope="module")
def daphne_url(tmp_path_factory):
    """A real Daphne serving the portal on a free loopback port, on its own SQLite file."""
    data_dir = tmp_path_factory.mktemp("doctor-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    env["PORTAL_DATA_DIR"] = str(data_dir)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not doctor._portal_answers("127.0.0.1", port):
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_websocket_upgrades_that_reach_daphne_pass(daphne_url):
    finding = doctor.check_websocket(daphne_url)
    assert finding.status == doctor.OK, finding.detail


class UpgradeDroppingProxy(http.server.BaseHTTPRequestHandler):
    """Stub of a misconfigured proxy: answers every request as plain HTTP, ignoring Upgrade."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


def test_a_proxy_that_drops_the_upgrade_is_named():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UpgradeDroppingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        finding = doctor.check_websocket(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert finding.status == doctor.FAIL
    assert "HTTP 200" in finding.detail
    assert "deploy/nginx.conf" in finding.fix


def test_a_url_that_is_not_http_is_refused():
    assert doctor.check_websocket("ftp://example").status == doctor.FAIL
