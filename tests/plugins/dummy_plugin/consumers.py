from typing import Any

from channels.db import database_sync_to_async

from portal.access import has_role
from portal.consumers import AuthenticatedJsonConsumer


class EchoConsumer(AuthenticatedJsonConsumer):
    async def may_connect(self, user: Any) -> bool:
        # Members only, like every plugin route unless it says otherwise (docs/plugins.md).
        return bool(await database_sync_to_async(has_role)(user, "member"))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if await self.user_still_active():
            await self.send_json({"type": "echo", "content": content})
