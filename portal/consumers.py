"""Base class of the portal's WebSocket consumers."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

# Close codes in the private range (4000-4999), documented in docs/websocket.md.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _user_is_active(user_id: int) -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """A JSON WebSocket that only logged-in, active users may open.

    Subclasses call ``await self.user_still_active()`` before acting on a message so a
    user who was disabled meanwhile is cut off.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await self.may_connect(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        await self.on_connected()

    async def may_connect(self, user: Any) -> bool:
        """Role check for subclasses; any active user by default."""
        return True

    async def on_connected(self) -> None:
        """Hook run after the socket was accepted."""

    async def user_still_active(self) -> bool:
        """Re-check the user in the database; close the socket when disabled."""
        if await _user_is_active(self.scope["user"].pk):
            return True
        await self.close(code=CLOSE_UNAUTHENTICATED)
        return False
