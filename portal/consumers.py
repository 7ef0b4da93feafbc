"""Base class of the portal's WebSocket consumers."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal import metrics, outage
from portal.socket_sessions import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, session_user, user_group

logger = logging.getLogger(__name__)

# RFC 6455's "Try Again Later": the socket ended because a part of the portal is down.
CLOSE_TRY_AGAIN_LATER = 1013


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """A JSON WebSocket that only signed-in, active users with the right role may open and keep.

    The sign-in is checked again (``portal.socket_sessions``) before every frame from the
    browser and whenever the account changes (logout, password change, deactivation, role
    change): the socket closes with 4401 when the session no longer signs the user in, 4403
    when ``may_connect`` no longer allows them. A message whose handler fails with an
    unexpected exception is logged and answered with an ``internal_error`` frame, one that
    meets a database or Redis outage with ``database_unavailable`` / ``redis_unavailable``;
    the socket stays open. When Redis goes away under the socket itself (the channel layer's
    receive, or joining the user's group at the handshake), the socket gets a
    ``redis_unavailable`` frame and closes with :data:`CLOSE_TRY_AGAIN_LATER`; the browser
    reconnects with backoff and is served again once Redis is back.
    """

    _counted_open = False
    _session_key: str | None = None
    _closed_by_check = False
    _accepted = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except outage.REDIS_ERRORS as exc:
            # Channels reads the channel layer beside the browser's frames; when that read (a
            # BRPOP on Redis) or the handshake's group_add fails, the consumer would end without
            # a word and Daphne would drop the connection. Say why and close cleanly instead.
            await self._close_for_outage(exc)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        self._accepted = True

    async def _close_for_outage(self, exc: BaseException) -> None:
        logger.warning("%s: Redis is down under the socket (%s); closing it", type(self).__name__, exc)
        self._count_closed()
        # The browser may have gone in the meantime; nothing more is owed to it then.
        with contextlib.suppress(Exception):
            if not self._accepted:
                await self.accept()
            await self.send_error("redis_unavailable", outage.message_for(outage.REDIS))
            await self.close(code=CLOSE_TRY_AGAIN_LATER)

    def _count_closed(self) -> None:
        """Take the socket off the open-sockets gauge, once."""
        if self._counted_open:
            self._counted_open = False
            metrics.socket_closed()

    async def dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "websocket.disconnect":
            self._count_closed()
        if kind in ("websocket.connect", "websocket.disconnect"):
            await super().dispatch(message)
            return
        if self._closed_by_check:
            return  # closed for a lapsed sign-in: nothing more is read or sent
        try:
            # Inside the try: a check that fails (the database is down) refuses the frame.
            if kind == "websocket.receive" and not await self.user_still_active():
                return
            await super().dispatch(message)
        except StopConsumer:
            raise
        except outage.OUTAGE_ERRORS as exc:
            # The database or Redis is down: the frame's transaction rolled back, so nothing
            # of it was saved; the socket stays open for when the part is back.
            part = outage.outage_of(exc) or outage.DATABASE
            logger.warning("%s: the %s is down (%s)", type(self).__name__, part, exc)
            await self.send_error(f"{part}_unavailable", outage.message_for(part))
        except Exception:
            # Last resort: one bad frame or event must not close the socket for the others.
            logger.exception("%s failed on a %s message", type(self).__name__, kind)
            await self.send_error("internal_error", "the portal failed on this request; it was logged")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Decode a text frame holding a JSON object and hand it to ``receive_json``; refuse anything else."""
        if text_data is None:
            await self.send_error("bad_json", "send JSON text frames")
            return
        if len(text_data) > self.max_frame_chars():
            await self.send_error("content_too_long", "the frame is too large")
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            # RecursionError: a frame nested thousands of levels deep is no JSON we take either.
            await self.send_error("bad_json", "the frame is not valid JSON")
            return
        if not isinstance(content, dict):
            await self.send_error("bad_json", "the frame must be a JSON object")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Act on a frame from the browser; by default the socket takes none (``unknown_type``)."""
        await self.send_error("unknown_type", f"unknown frame type {str(content.get('type'))[:40]!r}")

    def max_frame_chars(self) -> int:
        """Longest text frame decoded, in characters (Daphne's byte cap comes first, docs/websocket.md)."""
        return 65_536

    async def send_error(self, code: str, message: str, **details: Any) -> None:
        """Send an error frame: ``{"type": "error", "code", "message", ...details}``."""
        await self.send_json({"type": "error", "code": code, "message": message, **details})

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await self.may_connect(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session = self.scope.get("session")
        self._session_key = getattr(session, "session_key", None)
        await self.accept()
        # In self.groups, so Channels leaves the group when the socket closes.
        self.groups.append(user_group(user.pk))
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        self._counted_open = True
        metrics.socket_opened()
        await self.on_connected()

    async def may_connect(self, user: Any) -> bool:
        """Role check for subclasses, at the handshake and at every re-check; any active user by default."""
        return True

    async def on_connected(self) -> None:
        """Hook run after the socket was accepted."""

    async def user_recheck(self, event: dict[str, Any]) -> None:
        """The account changed (portal.socket_sessions.recheck_user_sockets): check the sign-in again."""
        ended = event.get("ended_session")
        if ended is not None and ended == self._session_key:
            await self._close_for(CLOSE_UNAUTHENTICATED)
            return
        await self.user_still_active()

    async def user_still_active(self) -> bool:
        """Check the sign-in and the role again; close the socket (4401/4403) and return False when lapsed."""
        if self._closed_by_check:
            return False
        user = await database_sync_to_async(session_user)(self._session_key, self.scope["user"].pk)
        if user is None:
            await self._close_for(CLOSE_UNAUTHENTICATED)
            return False
        if not await self.may_connect(user):
            await self._close_for(CLOSE_FORBIDDEN)
            return False
        return True

    async def _close_for(self, code: int) -> None:
        self._closed_by_check = True
        await self.close(code=code)
