"""Daphne's own WebSocket limits, against a real Daphne started as the portal starts it
(``python -m portal.daphne_server``, with short test settings).

- A message over the size cap closes the socket with 1009 ("message too big"), so the
  browser learns why, instead of Daphne dropping the TCP connection.
- A client that stops answering pings (a half-open connection) is dropped,
  while a client that answers them stays connected, however idle.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.browser import WebPortal
from tests.test_settings import run_manage, runportal_argv, settings_under

MAX_BYTES = 65_536
PING_INTERVAL = PING_TIMEOUT = 1  # seconds; the defaults are 20 and 30

# A session for a member, made in the portal's own database (its data directory).
SIGN_IN = (
    "from django.conf import settings; from django.contrib.auth import get_user_model; "
    "from django.test import Client; from accounts.roles import assign_role, MEMBERS; "
    "u = get_user_model().objects.create_user('alice', 'alice@example.com', 'a long test password'); "
    "assign_role(u, MEMBERS); c = Client(); c.force_login(u); "
    "print(f'{settings.SESSION_COOKIE_NAME}={c.cookies[settings.SESSION_COOKIE_NAME].value}')"
)


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: Any) -> Iterator[tuple[WebPortal, str]]:
    """A Daphne of the portal with a small size cap and fast keep-alive pings; and a member's cookie."""
    web = WebPortal(
        tmp_path_factory.mktemp("daphne-limits"),
        env={
            "PORTAL_WS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
            "PORTAL_WS_PING_INTERVAL": str(PING_INTERVAL),
            "PORTAL_WS_PING_TIMEOUT": str(PING_TIMEOUT),
        },
    )
    web.manage("migrate", "--noinput", "-v0")
    cookie = web.manage("shell", "-c", SIGN_IN).strip().splitlines()[-1]
    web.start(migrate=False)
    try:
        yield web, cookie
    finally:
        web.stop()


def open_ws(web: WebPortal, cookie: str, path: str) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{web.port}{path}",
        origin=Origin(web.url),
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )


def test_a_message_over_the_cap_closes_the_socket_with_1009(daphne: tuple[WebPortal, str]) -> None:
    web, cookie = daphne
    with open_ws(web, cookie, "/ws/chat/") as ws:
        # Just under the cap: delivered, and answered like any frame.
        ws.send(json.dumps({"type": "chat.pad", "pad": "x" * (MAX_BYTES - 100)}))
        assert json.loads(ws.recv(timeout=10))["code"] == "unknown_type"
        ws.send(json.dumps({"type": "chat.pad", "pad": "x" * MAX_BYTES}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "Daphne dropped the connection without a close frame"
    assert closed.value.rcvd.code == 1009


def raw_socket(web: WebPortal, cookie: str) -> tuple[socket.socket, bytes]:
    """Open /ws/status/ by hand: a client that never answers a ping (nor anything else)."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/status/ HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {web.url}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return sock, head.split(b"\r\n\r\n", 1)[1]


def opcodes_until_dropped(sock: socket.socket, buffered: bytes, timeout: float) -> list[int]:
    """Read the server's frames without answering; return their opcodes once it drops the connection."""
    data, opcodes = buffered, []
    deadline = time.monotonic() + timeout
    while True:
        while len(data) >= 2:
            length, offset = data[1] & 0x7F, 2
            if length == 126:
                (length,), offset = struct.unpack("!H", data[2:4]), 4
            elif length == 127:
                (length,), offset = struct.unpack("!Q", data[2:10]), 10
            if len(data) < offset + length:
                break
            opcodes.append(data[0] & 0x0F)
            data = data[offset + length :]
        assert time.monotonic() < deadline, f"still connected after {timeout} s; frames so far: {opcodes}"
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return opcodes  # dropped with a reset: the close handshake got no answer either
        if not chunk:
            return opcodes
        data += chunk


def test_a_client_that_stops_answering_pings_is_dropped_and_one_that_answers_stays(
    daphne: tuple[WebPortal, str],
) -> None:
    web, cookie = daphne
    with open_ws(web, cookie, "/ws/status/") as answering:
        assert json.loads(answering.recv(timeout=10))["type"] == "engines"
        silent, buffered = raw_socket(web, cookie)
        try:
            # Daphne looks every 2 s; then the ping, its timeout, and the close handshake's.
            opcodes = opcodes_until_dropped(silent, buffered, timeout=4 * (PING_INTERVAL + PING_TIMEOUT) + 6)
        finally:
            silent.close()
        # Dropped after an unanswered ping: a peer that does not answer pings cannot be told why.
        assert 0x9 in opcodes, "no ping was sent"
        # Idle just as long, but answering pings (the client library does): still open and served.
        answering.send(json.dumps({"type": "still.there"}))
        assert json.loads(answering.recv(timeout=10))["code"] == "unknown_type"


# --- The settings Daphne gets ---------------------------------------------------------------


def test_daphne_closes_sockets_no_later_than_the_session_ends(tmp_path: Any, settings: Any) -> None:
    from portal.daphne_server import limit_arguments

    assert settings_under(tmp_path, PORTAL_SESSION_AGE="3600")["WS_TIMEOUT"] == 3600
    settings.WS_TIMEOUT = settings.SESSION_COOKIE_AGE
    arguments = limit_arguments()
    assert arguments[arguments.index("--websocket_timeout") + 1] == str(settings.SESSION_COOKIE_AGE)


def test_a_socket_timeout_longer_than_the_session_is_refused(tmp_path: Any) -> None:
    result = run_manage("check", tmp_path=tmp_path, PORTAL_SESSION_AGE="3600", PORTAL_WS_TIMEOUT="7200")
    assert result.returncode != 0
    assert "PORTAL_WS_TIMEOUT" in result.stderr


def test_runportal_starts_daphne_with_the_portals_limits(monkeypatch: Any) -> None:
    assert runportal_argv(monkeypatch)["web"][1:3] == ["-m", "portal.daphne_server"]
