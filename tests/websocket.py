"""Helpers to open the portal's real ASGI WebSocket stack as a given user."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from portal.asgi import application

ORIGIN = b"http://localhost"
HOST = b"localhost"


@database_sync_to_async
def signed_in_client(user: Any) -> Client:
    """Return a test client with a session of its own for ``user`` (one browser)."""
    client = Client()
    client.force_login(user)
    return client


def cookie_of(client: Client) -> bytes:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def session_cookie_for(user: Any) -> bytes:
    return cookie_of(await signed_in_client(user))


async def open_socket(
    path: str,
    user: Any = None,
    origin: bytes | None = ORIGIN,
    *,
    client: Client | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[WebsocketCommunicator, bool, int | str | None]:
    """Connect to ``path`` through the full ASGI stack; return (communicator, accepted, close code).

    The session is a new one for ``user``, or the one ``client`` (a signed-in test client)
    holds; ``headers`` replace the default Host (``origin=None`` sends no Origin at all).
    """
    sent = list(headers) if headers is not None else [(b"host", HOST)]
    if origin is not None:
        sent = [(b"origin", origin), *sent]
    if client is not None:
        sent.append((b"cookie", cookie_of(client)))
    elif user is not None:
        sent.append((b"cookie", await session_cookie_for(user)))
    communicator = WebsocketCommunicator(application, path, headers=sent)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code
