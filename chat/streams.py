"""Answers this web process is writing: one task each, shown to sockets through the channel layer.

The generation belongs to the web process, not to the socket that asked for it, so a reload
can pick it up again. Two channel-layer groups per answer make that work across processes:

- ``chat-view-<answer id>``: the sockets showing the answer (``chat/viewers.py``); every
  frame goes to this group as a ``viewer.frame`` event.
- ``chat-ctl-<answer id>``: the process running the answer listens here for the control
  events ``stream.stop``, ``stream.attach`` (a socket wants the text so far; it gets a
  ``viewer.snapshot``) and ``stream.detach`` (a socket went away). With nobody attached for
  ``CHAT_GRACE_SECONDS`` the answer is stopped and kept as interrupted.

The control events have names of their own, apart from the browser's ``chat.*`` frames:
they are a protocol between processes, not something a browser can send.

Sockets in the process that writes the answer (the common case: the socket that asked for
it) get its frames by a direct call, not through the channel layer: with Redis, one
``group_send`` round trip per frame was most of the chat's CPU per token and made it
collapse beyond 64 streams (docs/benchmarks.md). Such a socket does not join the view group;
frames go to the group only while a socket of another process is present (it said so with
``stream.attach``).

While answers run, the process touches their heartbeats in the database, so an answer
whose process died can be told from one whose process is merely slow to answer. One beat
covers every answer of the process (one UPDATE each ``HEARTBEAT_SECONDS``, on a thread of
its own): with one task and one UPDATE per answer, a thousand answers starting at once
queued their beats behind each other's admissions for longer than ``LOST_AFTER_SECONDS``,
and live answers were taken for lost (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from chat import conversations
from chat.conversations import Turn
from chat.models import Message
from inference.generation import STOP_BY_USER, STOP_DETACHED, Frame, Generation, Outcome, remaining_usage

logger = logging.getLogger(__name__)

# Control events, to the process writing an answer (its chat-ctl group).
STREAM_STOP = "stream.stop"
STREAM_ATTACH = "stream.attach"
STREAM_DETACH = "stream.detach"
STREAM_END = "stream.end"  # from the stream to its own listener: the answer is settled
# Events to the sockets showing an answer (the consumer has a handler for each).
VIEWER_FRAME = "viewer.frame"
VIEWER_SNAPSHOT = "viewer.snapshot"
LISTENER_END_SECONDS = 5.0

# The streams of this process. Besides naming them, this keeps their tasks referenced:
# the event loop holds only weak references to tasks.
_running: dict[int, ChatStream] = {}
# The task that beats for every answer in _running (see the module's docstring).
_heart: asyncio.Task[None] | None = None


def _start_heart() -> None:
    global _heart
    loop = asyncio.get_running_loop()
    if _heart is None or _heart.done() or _heart.get_loop() is not loop:
        _heart = loop.create_task(_beat())


def _stop_heart_if_idle() -> None:
    global _heart
    if not _running and _heart is not None:
        _heart.cancel()  # nothing left to beat for: do not keep a task sleeping
        _heart = None


async def _beat() -> None:
    """Touch the heartbeat of every answer this process writes, each ``HEARTBEAT_SECONDS``."""
    while _running:
        await asyncio.sleep(conversations.HEARTBEAT_SECONDS)
        try:
            # Not thread-sensitive: the one thread every consumer's database work shares may
            # be minutes behind under a burst of new answers, and the beat must not wait there.
            await sync_to_async(_touch, thread_sensitive=False)(list(_running))
        except Exception:
            # A missed beat is harmless; only a long silence makes the answers lost.
            logger.exception("heartbeat of %d answers failed", len(_running))


def _touch(answer_ids: list[int]) -> None:
    try:
        conversations.touch(answer_ids)
    finally:
        connections.close_all()  # this worker thread's connection goes back (to the pool)


class LocalViewer(Protocol):
    """A socket of this process that shows answers (``chat.viewers.Viewer``)."""

    channel: str

    async def frame(self, event: dict[str, Any]) -> None: ...


# The sockets of this process by channel, and those showing each answer written here.
_viewers_here: dict[str, LocalViewer] = {}
_watching_here: dict[int, set[LocalViewer]] = {}


def viewer_opened(viewer: LocalViewer) -> None:
    """Count ``viewer`` as a socket of this process (its frames need no channel layer)."""
    _viewers_here[viewer.channel] = viewer


def viewer_closed(viewer: LocalViewer) -> None:
    """Forget a socket of this process that went away."""
    _viewers_here.pop(viewer.channel, None)


def watch_here(answer_id: int, viewer: LocalViewer) -> bool:
    """Show ``answer_id``'s frames to ``viewer`` by direct calls if this process writes it.

    Returns False when another process writes it (or it is no longer written): the viewer
    then joins the answer's view group instead.
    """
    if answer_id not in _running:
        return False
    _watching_here.setdefault(answer_id, set()).add(viewer)
    return True


def unwatch_here(answer_id: int, viewer: LocalViewer) -> None:
    """Stop showing ``answer_id``'s frames to ``viewer`` (after :func:`watch_here` said True)."""
    watching = _watching_here.get(answer_id)
    if watching is not None:
        watching.discard(viewer)


def view_group(answer_id: int) -> str:
    return f"chat-view-{answer_id}"


def control_group(answer_id: int) -> str:
    return f"chat-ctl-{answer_id}"


def done_frame(message: Message, remaining: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the ``done`` frame of a settled answer, live or re-loaded (one shape for both)."""
    shown = message.as_dict()
    return {
        "type": "done",
        "conversation": message.conversation_id,
        "answer": shown["id"],
        "status": shown["status"],
        "content": shown["content"],
        "usage": shown["usage"],
        "ttft_ms": shown["ttft_ms"],
        "duration_ms": shown["duration_ms"],
        "finish_reason": shown["finish_reason"],
        "error": shown["error"],
        "remaining": remaining,
    }


class ChatStream:
    """One answer being written by this process (the generation's sink for the chat)."""

    def __init__(self, turn: Turn, viewer_channel: str) -> None:
        self.turn = turn
        self.answer_id: int = turn.answer.pk
        self.conversation_id: int = turn.conversation.pk
        self.generation = Generation(turn.prepared, self)
        self.layer = get_channel_layer()
        self.present: set[str] = {viewer_channel}
        self.channel = ""
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._grace: asyncio.TimerHandle | None = None

    def start_frame(self) -> dict[str, Any]:
        turn = self.turn
        return {
            "type": "start",
            "conversation": self.conversation_id,
            "title": str(turn.conversation),
            "created": turn.created,
            "answer": self.answer_id,
            "question": {"id": turn.user_message.pk, "content": turn.user_message.content},
            "model": turn.prepared.target.served_model,
            "engine": turn.prepared.target.name,
            "reasoning_model": turn.prepared.target.reasoning,
            "notices": list(turn.prepared.notices),
            "resumed": False,
        }

    async def begin(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(control_group(self.answer_id), self.channel)
        _running[self.answer_id] = self
        _start_heart()
        self._listener = asyncio.create_task(self._listen())
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.generation.run()
        finally:
            _running.pop(self.answer_id, None)
            _watching_here.pop(self.answer_id, None)
            if self._grace is not None:
                self._grace.cancel()
            _stop_heart_if_idle()
            await self.layer.group_discard(control_group(self.answer_id), self.channel)
            await self._end_listener()

    async def _end_listener(self) -> None:
        """Ask the control listener to return, and cancel it only if it does not.

        channels-redis receives for every channel of a process with one blocking pop: a task
        cancelled inside receive() can drop a message it just popped for another channel,
        such as this answer's ``done`` frame on its way to the socket.
        """
        if self._listener is None:
            return
        await self.layer.send(self.channel, {"type": STREAM_END})
        try:
            await asyncio.wait_for(asyncio.shield(self._listener), LISTENER_END_SECONDS)
        except TimeoutError:
            self._listener.cancel()

    async def _listen(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
                if event.get("type") == STREAM_END:
                    return
                await self._control(event)
            except Exception:
                # Keep listening: without this loop, stop and re-attach would stop working.
                logger.exception("chat control of answer %s failed", self.answer_id)
                await asyncio.sleep(1)

    async def _control(self, event: dict[str, Any]) -> None:
        kind, channel = event.get("type"), event.get("channel", "")
        if kind == STREAM_STOP:
            self.generation.stop(STOP_BY_USER)
        elif kind == STREAM_ATTACH:
            self.present.add(channel)
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            generation = self.generation
            await self.layer.send(
                channel,
                {
                    "type": VIEWER_SNAPSHOT,
                    "answer": self.answer_id,
                    "start": {**self.start_frame(), "resumed": True},
                    "seq": generation.seq,
                    "content": generation.sent_content,
                    "reasoning": generation.sent_reasoning,
                },
            )
        elif kind == STREAM_DETACH:
            self.present.discard(channel)
            if not self.present and self._grace is None:
                loop = asyncio.get_running_loop()
                self._grace = loop.call_later(settings.CHAT_GRACE_SECONDS, self.generation.stop, STOP_DETACHED)

    async def _show(self, frame: dict[str, Any]) -> None:
        event = {"type": VIEWER_FRAME, "answer": self.answer_id, "frame": frame}
        for viewer in list(_watching_here.get(self.answer_id, ())):
            try:
                await viewer.frame(event)
            except Exception:
                # One socket failing must not keep the frame from the others.
                logger.exception("showing a frame of answer %s failed", self.answer_id)
        if not self.present.issubset(_viewers_here):
            # A socket of another process is present: it joined the view group.
            await self.layer.group_send(view_group(self.answer_id), event)

    # --- GenerationSink ---------------------------------------------------------------

    async def on_start(self, generation: Generation) -> None:
        await self._show(self.start_frame())

    async def on_frame(self, generation: Generation, frame: Frame) -> None:
        await self._show(
            {
                "type": "delta",
                "answer": self.answer_id,
                "seq": frame.seq,
                "content": frame.content,
                "reasoning": frame.reasoning,
            }
        )

    def persist(self, outcome: Outcome) -> None:
        conversations.finish_answer(self.answer_id, outcome)

    async def on_finish(self, generation: Generation, outcome: Outcome) -> None:
        if outcome.error_code:
            await self._show(
                {
                    "type": "error",
                    "code": outcome.error_code,
                    "message": outcome.error_message,
                    "conversation": self.conversation_id,
                    "answer": self.answer_id,
                }
            )
        answer = conversations.settled_answer(self.answer_id, self.conversation_id, outcome)
        await self._show(done_frame(answer, outcome.remaining))


async def start(turn: Turn, viewer_channel: str) -> None:
    """Start writing the answer of ``turn`` in this process; ``viewer_channel`` is attached."""
    await ChatStream(turn, viewer_channel).begin()


async def stop(answer_id: int) -> None:
    """Ask whichever process writes the answer to stop it."""
    await get_channel_layer().group_send(control_group(answer_id), {"type": STREAM_STOP})


async def attach(answer_id: int, channel: str) -> None:
    """Ask for the text so far (sent to ``channel`` as a snapshot) and count it as present."""
    await get_channel_layer().group_send(control_group(answer_id), {"type": STREAM_ATTACH, "channel": channel})


async def detach(answer_id: int, channel: str) -> None:
    """Say ``channel`` went away; with nobody left the grace period starts."""
    await get_channel_layer().group_send(control_group(answer_id), {"type": STREAM_DETACH, "channel": channel})


@database_sync_to_async
def settled_frame(answer_id: int) -> dict[str, Any] | None:
    """The ``done`` frame of an answer no longer being written, marked lost if its process died.

    None while a live process still writes it. Raises ``Message.DoesNotExist`` once deleted.
    """
    message = conversations.settled_or_lost(answer_id)
    if message is None:
        return None
    # What is left now: for an answer settled a moment ago, what the live frame said.
    return done_frame(message, remaining_usage(message.conversation.owner_id))
