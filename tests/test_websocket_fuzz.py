"""Property-based fuzzing of the WebSocket protocol: the chat socket and the engine status socket.

Frames are drawn around the real protocol (docs/websocket.md): known and unknown types,
fields of every JSON type, huge numbers, unicode, garbled and truncated JSON, binary frames,
several frames in any order. After each example a probe frame must get its own error frame
back on the same socket: the consumer is alive, never answered ``internal_error``, never
closed, and a refused frame saved nothing. No engine is registered while fuzzing, so a
frame that would start an answer is refused at admission (and the example stays fast); at
the end the stub engine is registered and the same socket still answers a full turn.

Example counts: ``fuzz_settings`` (2,000 per test in CI, 50 locally).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import event, example, given
from hypothesis import strategies as st

from chat.models import Conversation, Message
from tests.chat_socket import frames_until, saved_counts, wind_down_loop
from tests.chat_stub_engine import StubEngine, register
from tests.hypothesis_settings import fuzz_settings
from tests.hypothesis_settings import json_values as shared_json_values
from tests.websocket import open_socket

# 2,000 examples in CI, each a few frames through the full stack and a fresh sign-in check per
# frame: more than the suite's default per-test timeout on a busy machine.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1800)]

TIMEOUT = 10
KNOWN_TYPES = ["chat.send", "chat.regenerate", "chat.edit", "chat.stop", "chat.attach"]
PARAM_KEYS = ["model", "system", "temperature", "top_p", "max_tokens", "reasoning_effort"]

json_values = shared_json_values(2**80)
params = st.dictionaries(st.sampled_from(PARAM_KEYS) | st.text(max_size=8), json_values, max_size=4) | json_values
structured = st.fixed_dictionaries(
    {"type": st.sampled_from(KNOWN_TYPES) | st.text(max_size=12) | json_values},
    optional={
        "conversation": st.none() | st.integers(-(2**70), 2**70) | st.just("existing") | json_values,
        "content": st.text(max_size=40) | json_values,
        "params": params,
        "seq": json_values,
    },
)


def as_text(frame: dict[str, Any], existing: int) -> str:
    if frame.get("conversation") == "existing":
        frame = {**frame, "conversation": existing}
    return json.dumps(frame)


# A frame is sent as ("text", str), ("json", dict: filled in with a real conversation id) or ("bytes", bytes).
frames = (
    structured.map(lambda frame: ("json", frame))
    | st.text(max_size=200).map(lambda text: ("text", text))
    | st.tuples(structured, st.integers(0, 60)).map(lambda drawn: ("cut", drawn))
    | st.integers(4_000, 6_000).map(lambda digits: ("text", '{"type": "chat.send", "content": 1' + "9" * digits + "}"))
    | st.binary(max_size=100).map(lambda data: ("bytes", data))
)
# Up to two frames before the probe: enough for out-of-order pairs (stop before send, edit then regenerate).
exchanges = st.lists(frames, min_size=1, max_size=2)

DEEP = ("text", "[" * 50_000)  # nested deeper than Python's JSON parser recurses


class LiveSocket:
    """One socket kept open across examples, on an event loop of its own run between examples."""

    def __init__(self, path: str, user: Any, existing: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        self.existing = existing
        self.probes = 0
        self.communicator: WebsocketCommunicator = self.run(self._open(path, user))

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    async def _open(self, path: str, user: Any) -> WebsocketCommunicator:
        communicator, connected, code = await open_socket(path, user)
        assert connected, f"refused with {code}"
        return communicator

    def exchange(self, sent: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Send the frames and a probe; return every frame received up to the probe's answer."""
        answers: list[dict[str, Any]] = self.run(self._exchange(sent))
        return answers

    async def _exchange(self, sent: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        for kind, value in sent:
            # send_input, not send_to: the test helper refuses empty frames, which a browser can send.
            if kind == "bytes":
                message = {"type": "websocket.receive", "bytes": value}
            elif kind == "json":
                message = {"type": "websocket.receive", "text": as_text(value, self.existing)}
            elif kind == "cut":
                frame, keep = value
                message = {"type": "websocket.receive", "text": as_text(frame, self.existing)[:keep]}
            else:
                message = {"type": "websocket.receive", "text": value}
            await self.communicator.send_input(message)
        self.probes += 1
        probe = f"fuzz.probe.{self.probes}"
        await self.communicator.send_to(text_data=json.dumps({"type": probe}))
        received: list[dict[str, Any]] = []
        while True:
            output = await self.communicator.receive_output(timeout=TIMEOUT)
            assert output["type"] == "websocket.send", f"the socket closed: {output}"
            frame = json.loads(output["text"])
            if frame.get("code") == "unknown_type" and probe in frame.get("message", ""):
                return received
            received.append(frame)

    def close(self) -> None:
        self.run(self.communicator.disconnect())
        # The channel layer was made on this loop: later tests must get one of their own.
        self.run(wind_down_loop())
        self.loop.close()


def check(answers: list[dict[str, Any]]) -> None:
    for frame in answers:
        assert isinstance(frame.get("type"), str), frame
        assert frame.get("code") != "internal_error", frame
        if frame["type"] == "error":
            assert isinstance(frame.get("code"), str), frame
            assert isinstance(frame.get("message"), str), frame
            event(f"error {frame['code']}")
        else:
            event(frame["type"])


@pytest.fixture
def chat_socket(alice: Any) -> Iterator[LiveSocket]:
    conversation = Conversation.objects.create(owner=alice, title="Existing")
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Hi")
    Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="Hello")
    live = LiveSocket("/ws/chat/", alice, existing=conversation.pk)
    yield live
    live.close()


def test_fuzzed_chat_frames_get_clean_answers_and_the_socket_keeps_working(chat_socket: LiveSocket) -> None:
    before = chat_socket.run(saved_counts())

    @fuzz_settings
    @given(sent=exchanges)
    @example(sent=[DEEP])
    @example(sent=[("json", {"type": "chat.stop"}), ("json", {"type": "chat.regenerate", "conversation": "existing"})])
    @example(sent=[("json", {"type": "chat.edit", "conversation": "existing", "content": "\U0001f600" * 30})])
    def one(sent: list[tuple[str, Any]]) -> None:
        check(chat_socket.exchange(sent))

    one()
    assert chat_socket.run(saved_counts()) == before, "a refused frame saved something"

    # Still a working chat socket: with an engine, the same socket answers a turn.
    engine = StubEngine()
    try:
        register(engine.url)
        chat_socket.run(chat_socket.communicator.send_to(text_data=json.dumps({"type": "chat.send", "content": "Hi"})))
        answer = chat_socket.run(frames_until(chat_socket.communicator, "done"))
        assert "".join(frame["content"] for frame in answer if frame["type"] == "delta") == "Hello world"
    finally:
        engine.close()


def test_fuzzed_frames_on_the_status_socket_get_clean_answers(alice: Any) -> None:
    live = LiveSocket("/ws/status/", alice)
    try:
        assert live.run(live.communicator.receive_json_from(timeout=TIMEOUT))["type"] == "engines"

        @fuzz_settings
        @given(sent=exchanges)
        @example(sent=[DEEP])
        def one(sent: list[tuple[str, Any]]) -> None:
            answers = live.exchange(sent)
            check(answers)
            # The status socket takes no frames: each one is refused, and only engine pushes come otherwise.
            assert {frame["type"] for frame in answers} <= {"error", "engines"}

        one()
    finally:
        live.close()
