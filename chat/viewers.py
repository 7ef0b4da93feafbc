"""What one chat socket shows: the answer it watches, how far it has shown it, where it is present.

A socket shows at most one answer at a time. After ``chat.send`` it shows the new answer
from its first frame; after ``chat.attach`` it waits for a snapshot of the text so far (from
whichever process writes the answer, see ``chat/streams.py``), buffering the frames that
arrive meanwhile, then shows only frames after the snapshot's ``seq``. Until the snapshot
comes, an attach timer looks at the answer in the database, so a settled or lost answer
still ends with its ``done`` frame.

The socket counts as *present* for every answer it started or attached to; when it goes
away it says so, and an answer nobody is present for is stopped after the grace period.

Frames of an answer written in this process arrive by a direct call from its stream (see
``chat/streams.py``), on the stream's task rather than the consumer's: a lock keeps them in
order with a snapshot being shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import conversations, streams
from chat.conversations import ChatRejected
from chat.models import Message
from inference.audit_events import record_refusal
from inference.rejections import GenerationRejected

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Viewer:
    """The answer one socket shows, and the calls into the chat services its frames make."""

    def __init__(self, user: Any, channel: str, send: Send) -> None:
        self.user = user
        self.channel = channel
        self.send = send
        self.layer = get_channel_layer()
        # The answer whose frames this socket shows, and the last frame it has shown; seq is
        # None while waiting for the text so far (after chat.attach), with frames buffered.
        self.watching: int | None = None
        self.watch_seq: int | None = 0
        self.resumed = False
        self.buffer: list[dict[str, Any]] = []
        # Answers this socket started or attached to: it counts as present for them.
        self.present_in: set[int] = set()
        self.attach_timer: asyncio.Task[None] | None = None
        # Whether the watched answer's frames come by direct calls (written in this process)
        # rather than through its view group.
        self.watching_here = False
        self._showing = asyncio.Lock()
        streams.viewer_opened(self)

    # --- what the browser asks for ------------------------------------------------------

    async def turn(self, kind: str, conversation_id: Any, content: Any, params: Any) -> None:
        """Start a turn (``send``, ``regenerate`` or ``edit``) and show its answer from the start.

        Raises :class:`ChatRejected` or ``GenerationRejected`` before anything was saved.
        """
        try:
            turn = await database_sync_to_async(conversations.begin_turn)(
                self.user, kind, conversation_id, content, params
            )
        except GenerationRejected as refusal:
            # Recorded after begin_turn's transaction, which rolled back with the refusal.
            model = params.get("model") if isinstance(params, dict) else None
            await database_sync_to_async(record_refusal)(
                self.user.pk, conversations.SOURCE, model if isinstance(model, str) else None, refusal
            )
            raise
        self.present_in.add(turn.answer.pk)
        await streams.start(turn, self.channel)
        # Before the stream's task first runs (no await since start): it shows us its start.
        await self._watch(turn.answer.pk, seq=0)

    async def stop(self, conversation_id: Any) -> None:
        """Stop the answer of ``conversation_id``, or the one this socket shows (None).

        Raises :class:`ChatRejected`: ``not_generating`` when no answer is being written,
        ``not_found`` for a conversation that is not the user's.
        """
        answer_id = self.watching
        if conversation_id is not None:
            answer = await database_sync_to_async(conversations.streaming_answer)(self.user, conversation_id)
            answer_id = answer.pk if answer is not None else None
        if answer_id is None:
            raise ChatRejected("not_generating", "no answer is being written")
        await streams.stop(answer_id)

    async def attach(self, conversation_id: Any) -> None:
        """Show ``conversation_id`` (None: nothing): say ``attached``, then its running answer.

        Raises :class:`ChatRejected` (``not_found``) for a conversation that is not the user's.
        """
        answer = None
        if conversation_id is not None:
            answer = await database_sync_to_async(conversations.streaming_answer)(self.user, conversation_id)
        if answer is None:
            await self._watch(None)
            await self.send({"type": "attached", "conversation": conversation_id, "answer": None})
            return
        await self._watch(answer.pk, seq=None)
        self.present_in.add(answer.pk)
        await self.send({"type": "attached", "conversation": conversation_id, "answer": answer.pk})
        await streams.attach(answer.pk, self.channel)
        if self.attach_timer is not None:
            self.attach_timer.cancel()
        self.attach_timer = asyncio.create_task(self._attach_timeout(answer.pk))

    async def close(self) -> None:
        """The socket went away: leave every answer it was present for."""
        if self.attach_timer is not None:
            self.attach_timer.cancel()
        streams.viewer_closed(self)
        for answer_id in self.present_in:
            await streams.detach(answer_id, self.channel)
        await self._watch(None)

    # --- what the streams send ----------------------------------------------------------

    async def frame(self, event: dict[str, Any]) -> None:
        """Show a frame of the watched answer (buffered while waiting for the snapshot)."""
        async with self._showing:
            if event.get("answer") != self.watching:
                return
            if self.watch_seq is None:
                self.buffer.append(event["frame"])
                return
            await self._forward(event["frame"])

    async def snapshot(self, event: dict[str, Any]) -> None:
        """Show the text so far of the answer being attached to, then the frames after it."""
        async with self._showing:
            if event.get("answer") != self.watching or self.watch_seq is not None:
                return
            if self.attach_timer is not None:
                self.attach_timer.cancel()
            await self.send({**event["start"], "content": event["content"], "reasoning": event["reasoning"]})
            self.watch_seq = event["seq"]
            buffered, self.buffer = self.buffer, []
            for frame in buffered:
                await self._forward(frame)

    # --- the state ----------------------------------------------------------------------

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
                await streams.attach(answer_id, self.channel)
                continue
            if frame is not None:
                await self.send(frame)
            await self._watch(None)
            return

    async def _watch(self, answer_id: int | None, seq: int | None = 0) -> None:
        """Show frames of ``answer_id`` (from ``seq`` on; None: after the snapshot) and no other."""
        previous, previous_here = self.watching, self.watching_here
        # The new state first: frames arriving by direct call during the awaits below see it.
        self.watching, self.watch_seq, self.resumed = answer_id, seq, seq is None
        self.buffer = []
        if answer_id == previous:
            return
        self.watching_here = answer_id is not None and streams.watch_here(answer_id, self)
        if previous is not None:
            if previous_here:
                streams.unwatch_here(previous, self)
            else:
                await self.layer.group_discard(streams.view_group(previous), self.channel)
        if answer_id is not None and not self.watching_here:
            await self.layer.group_add(streams.view_group(answer_id), self.channel)

    async def _forward(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "start" and self.resumed:
            return
        if kind == "delta" and self.watch_seq is not None and frame["seq"] <= self.watch_seq:
            return
        await self.send(frame)
        if kind == "done" and self.watching == frame.get("answer"):
            await self._watch(None)
