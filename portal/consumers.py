"""Base class of the portal's WebSocket consumers."""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal import metrics, outage

logger = logging.getLogger(__name__)

# Close codes in the private range (4000-4999), documented in docs/websocket.md.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def user_group(user_id: int) -> str:
    """Return the channel group every socket of the user joins (a deactivation closes them all)."""
    return f"user.{user_id}"


@database_sync_to_async
def _user_is_active(user_id: int) -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """A JSON WebSocket that only logged-in, active users may open.

    Subclasses call ``await self.user_still_active()`` before acting on a message so a
    user who was disabled meanwhile is cut off. A message whose handler fails with an
    unexpected exception is logged and answered with an ``internal_error`` frame, one that
    meets a database or Redis outage with ``database_unavailable`` / ``redis_unavailable``;
    the socket stays open.
    """

    _counted_open = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.disconnect" and self._counted_open:
            self._counted_open = False
            metrics.socket_closed()
        if message.get("type") in ("websocket.connect", "websocket.disconnect"):
            await super().dispatch(message)
            return
        try:
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
            logger.exception("%s failed on a %s message", type(self).__name__, message.get("type"))
            await self.send_error("internal_error", "the portal failed on this request; it was logged")

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
        await self.accept()
        # In self.groups, so Channels leaves the group when the socket closes.
        self.groups.append(user_group(user.pk))
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        self._counted_open = True
        metrics.socket_opened()
        await self.on_connected()

    async def may_connect(self, user: Any) -> bool:
        """Role check for subclasses; any active user by default."""
        return True

    async def on_connected(self) -> None:
        """Hook run after the socket was accepted."""

    async def user_deactivated(self, event: dict[str, Any]) -> None:
        """Close at once: the account was deactivated or refused at sign-in (accounts/deprovision.py)."""
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def user_still_active(self) -> bool:
        """Re-check the user in the database; close the socket when disabled."""
        if await _user_is_active(self.scope["user"].pk):
            return True
        await self.close(code=CLOSE_UNAUTHENTICATED)
        return False
