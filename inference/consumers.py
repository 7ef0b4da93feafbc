"""WebSocket consumers of the inference app."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from inference import status
from portal.consumers import AuthenticatedJsonConsumer


class StatusConsumer(AuthenticatedJsonConsumer):
    """Push the engines' state to a logged-in page whenever it changes."""

    async def on_connected(self) -> None:
        await self.channel_layer.group_add(status.STATUS_GROUP, self.channel_name)
        await self.send_json({"type": "engines", "engines": await database_sync_to_async(status.snapshot)()})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(status.STATUS_GROUP, self.channel_name)

    async def engines_changed(self, event: dict[str, Any]) -> None:
        if await self.user_still_active():
            await self.send_json({"type": "engines", "engines": event["engines"]})
