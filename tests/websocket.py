"""Helpers to open the portal's real ASGI WebSocket stack as a given user."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from portal.asgi import application

ORIGIN = b"http://localhost"


@database_sync_to_async
def session_cookie_for(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def open_socket(
    path: str, user: Any = None, origin: bytes = ORIGIN
) -> tuple[WebsocketCommunicator, bool, int | str | None]:
    """Connect to ``path`` through the full ASGI stack; return (communicator, accepted, close code)."""
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", await session_cookie_for(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code
