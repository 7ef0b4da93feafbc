"""The chat socket at /ws/chat/: authenticate, check each frame, make one call into its viewer.

The protocol (every frame, field, error code and close code) is in docs/websocket.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.roles import is_member
from chat.conversations import EDIT, REGENERATE, SEND
from chat.viewers import Viewer
from inference.rejections import GenerationRejected
from portal.consumers import AuthenticatedJsonConsumer


def _frame_limit() -> int:
    # JSON may spell a character as \uXXXX (6 characters); allow that plus the envelope.
    return (settings.CHAT_MAX_MESSAGE_CHARS + settings.CHAT_MAX_SYSTEM_PROMPT_CHARS) * 6 + 65_536


class ChatConsumer(AuthenticatedJsonConsumer):
    """One browser tab's chat socket: checks each frame and hands it to the socket's viewer.

    What the socket shows lives in ``chat.viewers``; the answers run in ``chat.streams``.
    """

    viewer: Viewer | None = None

    async def may_connect(self, user: Any) -> bool:
        return bool(await database_sync_to_async(is_member)(user))

    async def on_connected(self) -> None:
        self.viewer = Viewer(self.scope["user"], self.channel_name, self.send_json)

    async def disconnect(self, code: int) -> None:
        if self.viewer is not None:
            await self.viewer.close()

    # --- from the browser -------------------------------------------------------------

    def max_frame_chars(self) -> int:
        return _frame_limit()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The sign-in was checked again before this frame (AuthenticatedJsonConsumer.dispatch).
        if self.viewer is None:
            return
        kind = content.get("type")
        action = _ACTIONS.get(kind) if isinstance(kind, str) else None
        if action is None:
            await self.send_error("unknown_type", f"unknown frame type {str(kind)[:40]!r}")
            return
        try:
            await action(self.viewer, content)
        except GenerationRejected as exc:
            await self.send_error(exc.code, exc.message, **exc.details)

    # --- from the channel layer (chat/streams.py) --------------------------------------

    async def viewer_frame(self, event: dict[str, Any]) -> None:
        if self.viewer is not None:
            await self.viewer.frame(event)

    async def viewer_snapshot(self, event: dict[str, Any]) -> None:
        if self.viewer is not None:
            await self.viewer.snapshot(event)


Action = Callable[[Viewer, dict[str, Any]], Awaitable[None]]

# The browser's frame types, each one call on the socket's viewer with the frame's fields.
_ACTIONS: dict[str, Action] = {
    "chat.send": lambda viewer, frame: viewer.turn(
        SEND, frame.get("conversation"), frame.get("content"), frame.get("params")
    ),
    "chat.regenerate": lambda viewer, frame: viewer.turn(
        REGENERATE, frame.get("conversation"), None, frame.get("params")
    ),
    "chat.edit": lambda viewer, frame: viewer.turn(
        EDIT, frame.get("conversation"), frame.get("content"), frame.get("params")
    ),
    "chat.stop": lambda viewer, frame: viewer.stop(frame.get("conversation")),
    "chat.attach": lambda viewer, frame: viewer.attach(frame.get("conversation")),
}
