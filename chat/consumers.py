"""The chat socket at /ws/chat/: validate, check ownership, call the chat services.

The protocol (every frame, field, error code and close code) is in docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.roles import is_member
from chat import conversations, streams
from chat.conversations import EDIT, REGENERATE, SEND, ChatRejected
from chat.models import Message
from inference.audit_events import record_refusal
from inference.generation import GenerationRejected
from portal.consumers import AuthenticatedJsonConsumer


def _frame_limit() -> int:
    # JSON may spell a character as \uXXXX (6 characters); allow that plus the envelope.
    return (settings.CHAT_MAX_MESSAGE_CHARS + settings.CHAT_MAX_SYSTEM_PROMPT_CHARS) * 6 + 65_536


class ChatConsumer(AuthenticatedJsonConsumer):
    """One browser tab's chat socket; the answers themselves run in ``chat.streams``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The answer whose frames this socket shows, and the last frame it has shown; seq is
        # None while waiting for the text so far (after chat.attach), with frames buffered.
        self.watching: int | None = None
        self.watch_seq: int | None = 0
        self.resumed = False
        self.buffer: list[dict[str, Any]] = []
        # Answers this socket started or attached to: it counts as present for them.
        self.present_in: set[int] = set()
        self.attach_timer: asyncio.Task[None] | None = None

    async def may_connect(self, user: Any) -> bool:
        return bool(await database_sync_to_async(is_member)(user))

    async def disconnect(self, code: int) -> None:
        if self.attach_timer is not None:
            self.attach_timer.cancel()
        for answer_id in self.present_in:
            await streams.detach(answer_id, self.channel_name)
        await self._watch(None)

    # --- from the browser -------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            await self.send_error("bad_json", "send JSON text frames")
            return
        if len(text_data) > _frame_limit():
            await self.send_error("content_too_long", "the frame is too large")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("bad_json", "the frame is not valid JSON")
            return
        if not isinstance(content, dict):
            await self.send_error("bad_json", "the frame must be a JSON object")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self.user_still_active():
            return
        kind = content.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.send_error("unknown_type", f"unknown frame type {str(kind)[:40]!r}")
            return
        try:
            await handler(self, content)
        except GenerationRejected as exc:
            await self.send_error(exc.code, exc.message, **exc.details)

    async def on_send(self, content: dict[str, Any]) -> None:
        await self._turn(SEND, content)

    async def on_regenerate(self, content: dict[str, Any]) -> None:
        await self._turn(REGENERATE, content)

    async def on_edit(self, content: dict[str, Any]) -> None:
        await self._turn(EDIT, content)

    async def _turn(self, kind: str, content: dict[str, Any]) -> None:
        try:
            turn = await database_sync_to_async(conversations.begin_turn)(
                self.scope["user"], kind, content.get("conversation"), content.get("content"), content.get("params")
            )
        except GenerationRejected as refusal:
            params = content.get("params")
            model = params.get("model") if isinstance(params, dict) else None
            await database_sync_to_async(record_refusal)(
                self.scope["user"].pk, conversations.SOURCE, model if isinstance(model, str) else None, refusal
            )
            raise
        await self._watch(turn.answer.pk, seq=0)
        self.present_in.add(turn.answer.pk)
        await streams.start(turn, self.channel_name)

    async def on_stop(self, content: dict[str, Any]) -> None:
        answer_id = self.watching
        if content.get("conversation") is not None:
            answer = await database_sync_to_async(conversations.streaming_answer)(
                self.scope["user"], content["conversation"]
            )
            answer_id = answer.pk if answer is not None else None
        if answer_id is None:
            raise ChatRejected("not_generating", "no answer is being written")
        await streams.stop(answer_id)

    async def on_attach(self, content: dict[str, Any]) -> None:
        conversation_id = content.get("conversation")
        answer = None
        if conversation_id is not None:
            answer = await database_sync_to_async(conversations.streaming_answer)(self.scope["user"], conversation_id)
        if answer is None:
            await self._watch(None)
            await self.send_json({"type": "attached", "conversation": conversation_id, "answer": None})
            return
        await self._watch(answer.pk, seq=None)
        self.present_in.add(answer.pk)
        await self.send_json({"type": "attached", "conversation": conversation_id, "answer": answer.pk})
        await streams.attach(answer.pk, self.channel_name)
        if self.attach_timer is not None:
            self.attach_timer.cancel()
        self.attach_timer = asyncio.create_task(self._attach_timeout(answer.pk))

    async def _attach_timeout(self, answer_id: int) -> None:
        """Until the snapshot comes, check the answer in the database every CHAT_ATTACH_TIMEOUT.

        Settled meanwhile, or lost (its process stopped its heartbeat): show its ``done`` frame.
        Still alive: ask again, since a slow process or layer is no reason to give it up.
        """
        while True:
            await asyncio.sleep(settings.CHAT_ATTACH_TIMEOUT)
            if self.watching != answer_id or self.watch_seq is not None:
                return
            try:
                frame, deleted = await streams.settled_frame(answer_id), False
            except Message.DoesNotExist:
                frame, deleted = None, True
            if self.watching != answer_id or self.watch_seq is not None:
                return
            if frame is None and not deleted:
                await streams.attach(answer_id, self.channel_name)
                continue
            if frame is not None:
                await self.send_json(frame)
            await self._watch(None)
            return

    async def _watch(self, answer_id: int | None, seq: int | None = 0) -> None:
        """Show frames of ``answer_id`` (from ``seq`` on; None: after the snapshot) and no other."""
        if self.watching is not None and self.watching != answer_id:
            await self.channel_layer.group_discard(streams.view_group(self.watching), self.channel_name)
        if answer_id is not None and answer_id != self.watching:
            await self.channel_layer.group_add(streams.view_group(answer_id), self.channel_name)
        self.watching, self.watch_seq, self.resumed = answer_id, seq, seq is None
        self.buffer = []

    # --- from the channel layer -------------------------------------------------------

    async def chat_frame(self, event: dict[str, Any]) -> None:
        if event.get("answer") != self.watching:
            return
        if self.watch_seq is None:
            self.buffer.append(event["frame"])
            return
        await self._forward(event["frame"])

    async def chat_snapshot(self, event: dict[str, Any]) -> None:
        if event.get("answer") != self.watching or self.watch_seq is not None:
            return
        if self.attach_timer is not None:
            self.attach_timer.cancel()
        await self.send_json({**event["start"], "content": event["content"], "reasoning": event["reasoning"]})
        self.watch_seq = event["seq"]
        buffered, self.buffer = self.buffer, []
        for frame in buffered:
            await self._forward(frame)

    async def _forward(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "start" and self.resumed:
            return
        if kind == "delta" and self.watch_seq is not None and frame["seq"] <= self.watch_seq:
            return
        await self.send_json(frame)
        if kind == "done":
            await self._watch(None)


_HANDLERS: dict[Any, Callable[[ChatConsumer, dict[str, Any]], Awaitable[None]]] = {
    "chat.send": ChatConsumer.on_send,
    "chat.regenerate": ChatConsumer.on_regenerate,
    "chat.edit": ChatConsumer.on_edit,
    "chat.stop": ChatConsumer.on_stop,
    "chat.attach": ChatConsumer.on_attach,
}
