"""A web process killed mid-answer leaves no reservation behind once the sweep ran.

A real Daphne process (its own SQLite data directory, tests/browser.py's ``WebPortal``)
streams an answer from the stub engine for a member whose policy allows one answer at a
time; the test opens the chat socket with a minimal WebSocket client, waits until the answer
streams, kills the process with SIGKILL, and then lets the lost-answer sweep run in another
process. Before the sweep the reservation is still held (nobody could settle it); after it,
nothing is held and the member can start an answer again.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import WebPortal
from tests.chat_stub_engine import Script, StubEngine

STATE = (
    "import json; from accounts.models import Reservation, UsageCounter; from chat.models import Message; "
    "c = UsageCounter.objects.get(user__username='alice'); "
    "print(json.dumps({'open': Reservation.objects.filter(settled_at__isnull=True).count(), "
    "'active': c.active_answers, 'held': c.held_tokens, "
    "'outcomes': list(Reservation.objects.values_list('outcome', flat=True)), "
    "'answers': list(Message.objects.filter(role='assistant').values_list('status', 'error_code'))}))"
)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[WebPortal, StubEngine]]:
    stub = StubEngine()
    stub.script = Script(pieces=[("", f"w{index} ") for index in range(400)], delay=0.05)
    web = WebPortal(tmp_path)
    try:
        web.start()
        web.manage("shell", "-c", f"from tests.chat_stub_engine import register; register({stub.url!r})")
        web.create_member("alice")
        web.manage("quota", "set", "alice", "--concurrent", "1", "--tokens-per-day", "100000")
        yield web, stub
    finally:
        web.stop()
        stub.close()


def printed(web: WebPortal, code: str) -> str:
    """Run ``code`` in ``manage.py shell``; return its last line (the shell first says what it imported)."""
    return web.manage("shell", "-c", code).strip().splitlines()[-1]


def session_cookie(web: WebPortal) -> str:
    return printed(
        web,
        "from django.contrib.sessions.backends.db import SessionStore; "
        "from django.contrib.auth import get_user_model; "
        "u = get_user_model().objects.get(username='alice'); s = SessionStore(); "
        "s['_auth_user_id'] = str(u.pk); "
        "s['_auth_user_backend'] = 'django.contrib.auth.backends.ModelBackend'; "
        "s['_auth_user_hash'] = u.get_session_auth_hash(); s.create(); print(s.session_key)",
    )


def send_over_websocket(port: int, path: str, cookie: str, message: dict[str, Any]) -> socket.socket:
    """Open a WebSocket (RFC 6455 handshake) and send one text frame; the socket stays open."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    handshake = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Cookie: sessionid={cookie}\r\n\r\n"
    )
    connection.sendall(handshake.encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += connection.recv(4096)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    payload = json.dumps(message).encode()
    mask = secrets.token_bytes(4)
    header = bytes([0x81]) + (
        bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0xFE]) + len(payload).to_bytes(2, "big")
    )
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    connection.sendall(header + mask + masked)
    return connection


def test_a_killed_web_process_leaves_no_reservation_once_the_sweep_ran(portal):
    web, stub = portal
    connection = send_over_websocket(
        web.port, "/ws/chat/", session_cookie(web), {"type": "chat.send", "conversation": None, "content": "Hello?"}
    )
    deadline = time.monotonic() + 30
    while not stub.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stub.requests, "the answer never reached the engine"
    time.sleep(0.5)  # mid-answer
    assert web.process is not None
    os.kill(web.process.pid, signal.SIGKILL)
    web.process.wait(timeout=10)
    connection.close()
    held = json.loads(printed(web, STATE))
    assert (held["open"], held["active"]) == (1, 1), "the dead process could settle nothing"
    assert held["held"] > 0
    # The sweep, as the next look at the answer runs it, once its heartbeat has been silent long enough.
    web.manage(
        "shell",
        "-c",
        "from datetime import timedelta; from django.utils import timezone; from chat import conversations; "
        "from chat.models import Message; "
        "old = timezone.now() - timedelta(seconds=conversations.LOST_AFTER_SECONDS + 1); "
        "Message.objects.filter(status='streaming').update(heartbeat_at=old); "
        "streaming = Message.objects.filter(status='streaming').values_list('pk', flat=True); "
        "[conversations.settled_or_lost(pk) for pk in streaming]",
    )
    swept = json.loads(printed(web, STATE))
    assert (swept["open"], swept["active"], swept["held"]) == (0, 0, 0)
    assert swept["outcomes"] == ["lost"]
    assert swept["answers"] == [["interrupted", "lost"]]
