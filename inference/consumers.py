"""WebSocket consumers of the inference app."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async

from inference import status
from portal.consumers import AuthenticatedJsonConsumer

# The supervisor is another process (often on another host), so the socket polls the
# database and pushes only when something users can see changed.
POLL_SECONDS = 2.0


class StatusConsumer(AuthenticatedJsonConsumer):
    """Push the engines' state to a logged-in page whenever it changes."""

    _poller: asyncio.Task[None] | None = None
    _last: list[dict[str, Any]] | None = None

    async def on_connected(self) -> None:
        await self.channel_layer.group_add(status.STATUS_GROUP, self.channel_name)
        await self._push(await database_sync_to_async(status.snapshot)())
        self._poller = asyncio.create_task(self._poll())

    async def disconnect(self, code: int) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.channel_layer.group_discard(status.STATUS_GROUP, self.channel_name)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            engines = await database_sync_to_async(status.snapshot)()
            if engines != self._last:
                if not await self.user_still_active():
                    return
                await self._push(engines)

    async def _push(self, engines: list[dict[str, Any]]) -> None:
        self._last = engines
        await self.send_json({"type": "engines", "engines": engines})

    async def engines_changed(self, event: dict[str, Any]) -> None:
        if await self.user_still_active():
            await self._push(event["engines"])
