"""Where a managed engine listens: a private socket directory, and one way to reach an engine.

The real engine on its socket is covered by tests/test_engine_real.py; a stranger listening
where the engine should is covered by tests/test_engine_supervisor.py.
"""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.engine_address import (
    SocketDirError,
    listener_is_ours,
    listener_pid,
    parse_address,
    release_socket_dir,
    remove_stale_socket,
    socket_dir,
)
from inference.engine_address import engine_address as address_of
from inference.engine_metrics import read_engine_metrics
from inference.models import EngineConfig, EngineState


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pe-") as folder:  # pytest's tmp_path is too long for a socket
        yield Path(folder)
    release_socket_dir()


def test_the_socket_directory_is_created_private_to_the_portals_user(settings: Any, short_dir: Path) -> None:
    settings.ENGINE_SOCKET_DIR = short_dir / "run"
    folder = socket_dir()
    info = folder.stat()
    assert folder == short_dir / "run"
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()


@pytest.mark.parametrize("mode", [0o755, 0o711, 0o770])
def test_a_socket_directory_others_can_open_is_refused(settings: Any, short_dir: Path, mode: int) -> None:
    loose = short_dir / "run"
    loose.mkdir(mode=0o700)
    loose.chmod(mode)
    settings.ENGINE_SOCKET_DIR = loose
    with pytest.raises(SocketDirError, match="mode 0700"):
        socket_dir()


def test_a_symlink_as_the_socket_directory_is_refused(settings: Any, short_dir: Path) -> None:
    target = short_dir / "elsewhere"
    target.mkdir(mode=0o700)
    (short_dir / "run").symlink_to(target)
    settings.ENGINE_SOCKET_DIR = short_dir / "run"
    with pytest.raises(SocketDirError):
        socket_dir()


def test_a_path_too_long_for_a_socket_falls_back_to_a_private_directory_under_tmp(
    settings: Any, tmp_path: Path
) -> None:
    settings.ENGINE_SOCKET_DIR = tmp_path / ("x" * 60) / "run"
    folder = socket_dir()
    try:
        assert str(folder).startswith("/tmp/portal-engine-")  # noqa: S108 - the fallback is short on purpose
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        longest = folder / f"{'n' * 64}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(longest))  # the longest engine name still fits in sun_path
        assert not (tmp_path / ("x" * 60)).exists(), "the long path is not used at all"
    finally:
        release_socket_dir()
    assert not folder.exists(), "the fallback directory is removed once the supervisor stops"


def test_a_stale_socket_is_removed_but_nothing_else(short_dir: Path) -> None:
    stale = short_dir / "engine.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(stale))
    remove_stale_socket(stale)
    assert not stale.exists()
    regular = short_dir / "notes.sock"
    regular.write_text("not a socket")
    remove_stale_socket(regular)
    assert regular.exists()
    remove_stale_socket(short_dir / "missing.sock")


@pytest.mark.django_db
def test_every_caller_gets_a_managed_engines_socket_and_an_external_engines_url() -> None:
    managed = EngineConfig.objects.create(name="m", served_model_name="m", model="/srv/m")
    assert address_of(managed) is None, "no launch, no address"
    EngineState.objects.create(engine=managed, base_url="unix:/srv/portal/run/m.sock")
    managed = EngineConfig.objects.select_related("state").get(pk=managed.pk)
    address = address_of(managed)
    assert address is not None
    assert address.socket_path == "/srv/portal/run/m.sock"
    assert address.url("/metrics") == "http://engine/metrics"
    external = EngineConfig.objects.create(
        name="x", kind=EngineConfig.Kind.EXTERNAL, url="https://vllm.example:8443/", ca_bundle="/etc/ca.pem"
    )
    outside = address_of(external)
    assert outside is not None
    assert outside.socket_path == ""
    assert outside.url("/health") == "https://vllm.example:8443/health"
    assert outside.ca_bundle == "/etc/ca.pem"


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'vllm:num_requests_running{model_name="m"} 2.0\nvllm:num_requests_waiting{model_name="m"} 1.0\n'
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass


class UnixHttpServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_engine_metrics_are_read_over_the_engines_socket(short_dir: Path) -> None:
    path = short_dir / "engine.sock"
    address = parse_address(f"unix:{path}")
    assert read_engine_metrics(address) is None, "nothing listens: no reading, no error"
    server = UnixHttpServer(str(path), MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reading = read_engine_metrics(address)
    finally:
        server.shutdown()
        server.server_close()
    assert reading is not None
    assert (reading.running, reading.waiting) == (2, 1)


def test_the_listener_of_a_socket_is_known_by_its_process(short_dir: Path) -> None:
    path = short_dir / "engine.sock"
    server = UnixHttpServer(str(path), MetricsHandler)
    unrelated = subprocess.Popen(["sleep", "30"])  # not an ancestor of the listener (this process)
    try:
        address = parse_address(f"unix:{path}")
        assert listener_pid(str(path)) == os.getpid()
        assert listener_is_ours(address, os.getpid())
        assert listener_is_ours(address, os.getppid()), "a descendant of the given process counts"
        assert not listener_is_ours(address, unrelated.pid)
    finally:
        unrelated.kill()
        unrelated.wait()
        server.server_close()
    assert listener_pid(str(path)) is None, "nothing listens any more"
