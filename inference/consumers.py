"""WebSocket consumers of the inference app."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async

from inference import status
from inference.sampling import allowed_models
from portal.consumers import AuthenticatedJsonConsumer

# The supervisor is another process, often on another host and with no channel layer of its
# own (the default layer is in-memory, per process): so the socket polls the database and
# pushes only when something users can see changed. Nothing is sent to it from outside.
POLL_SECONDS = 2.0


class StatusConsumer(AuthenticatedJsonConsumer):
    """Push the engines' state (``engines``, and ``models`` for the model picker) when it changes."""

    _poller: asyncio.Task[None] | None = None
    _last: dict[str, Any] | None = None

    async def on_connected(self) -> None:
        await self._push(await database_sync_to_async(self._state)())
        self._poller = asyncio.create_task(self._poll())

    def _state(self) -> dict[str, Any]:
        # The model picker lists only the models the user's policy allows.
        return status.public_state(allowed_models(self.scope["user"]))

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # A socket closed by the portal (a lapsed sign-in) stops polling at once, not when the
        # browser's disconnect arrives. From inside the poller, the poller returns by itself.
        if self._poller is not None and self._poller is not asyncio.current_task():
            self._poller.cancel()
        await super().close(code, reason)

    async def disconnect(self, code: int) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            state = await database_sync_to_async(self._state)()
            if state != self._last:
                if not await self.user_still_active():
                    return
                await self._push(state)

    async def _push(self, state: dict[str, Any]) -> None:
        self._last = state
        await self.send_json({"type": "engines", **state})
