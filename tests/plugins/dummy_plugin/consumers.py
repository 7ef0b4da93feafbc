from typing import Any

from portal.consumers import AuthenticatedJsonConsumer


class EchoConsumer(AuthenticatedJsonConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if await self.user_still_active():
            await self.send_json({"type": "echo", "content": content})
