"""Frames to sockets of the process writing the answer skip the channel layer; others still get them.

The channel layer here is the in-memory one of the test process. A socket of "another
process" is a bare channel on that layer that is not a socket of this process: it joins the
answer's view group and says ``stream.attach``, exactly as ``chat/viewers.py`` does in a
process that does not write the answer. tests/test_chat_multiprocess.py runs the same with
two real web processes on Redis.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer

from chat import streams
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

TIMEOUT = 10


def send(content: str = "Tell me a story") -> dict[str, Any]:
    return {"type": "chat.send", "conversation": None, "content": content, "params": {}}


@pytest.fixture
def group_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The groups the channel layer was asked to send to, in order."""
    layer = get_channel_layer()
    sent: list[str] = []
    original = layer.group_send

    async def counting(group: str, message: dict[str, Any]) -> None:
        sent.append(group)
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    return sent


async def test_the_asking_socket_gets_every_frame_without_the_channel_layer(alice, stub, group_sends):
    pieces = [("", f"w{index} ") for index in range(20)]
    stub.script = Script(pieces=[("hm ", ""), *pieces], delay=0.005)
    socket = await chat_socket(alice)
    await socket.send_json_to(send())
    frames = await frames_until(socket, "done")
    assert frames[0]["type"] == "start"
    assert joined(frames, "content") == "".join(content for _, content in pieces)
    assert joined(frames, "reasoning") == "hm "
    assert frames[-1]["status"] == "complete"
    # Nothing of the answer went to its view group: nobody elsewhere was watching.
    assert streams.view_group(frames[0]["answer"]) not in group_sends
    await socket.disconnect()


async def test_a_socket_of_another_process_gets_the_text_so_far_and_the_rest_through_the_layer(
    alice, stub, group_sends
):
    pieces = [("", f"p{index} ") for index in range(60)]
    stub.script = Script(pieces=pieces, delay=0.02)
    local = await chat_socket(alice)
    await local.send_json_to(send())
    start = await local.receive_json_from(timeout=TIMEOUT)
    await frames_until(local, "delta")
    answer_id = start["answer"]

    # What a socket does in a process that does not write the answer (chat/viewers.py).
    layer = get_channel_layer()
    elsewhere = await layer.new_channel()
    await layer.group_add(streams.view_group(answer_id), elsewhere)
    await streams.attach(answer_id, elsewhere)
    snapshot = await layer.receive(elsewhere)
    assert snapshot["type"] == streams.VIEWER_SNAPSHOT
    assert snapshot["start"]["resumed"] is True
    shown, done = snapshot["content"], None
    while done is None:
        event = await layer.receive(elsewhere)
        assert event["type"] == streams.VIEWER_FRAME
        frame = event["frame"]
        if frame["type"] == "delta" and frame["seq"] > snapshot["seq"]:
            shown += frame["content"]
        elif frame["type"] == "done":
            done = frame
    everything = "".join(content for _, content in pieces)
    assert shown == everything
    assert done["content"] == everything
    # The local socket still got every frame once, by direct call.
    rest = await frames_until(local, "done")
    deltas = [frame for frame in rest if frame["type"] == "delta"]
    assert [frame["seq"] for frame in deltas] == list(range(2, len(deltas) + 2))
    assert rest[-1]["content"] == everything
    assert streams.view_group(answer_id) in group_sends
    await streams.detach(answer_id, elsewhere)
    await local.disconnect()


async def test_a_second_socket_of_the_same_process_attaching_gets_frames_by_direct_call(alice, stub, group_sends):
    pieces = [("", f"q{index} ") for index in range(50)]
    stub.script = Script(pieces=pieces, delay=0.02)
    first = await chat_socket(alice)
    await first.send_json_to(send())
    start = await first.receive_json_from(timeout=TIMEOUT)
    await frames_until(first, "delta")
    second = await chat_socket(alice)
    await second.send_json_to({"type": "chat.attach", "conversation": start["conversation"]})
    attached = await second.receive_json_from(timeout=TIMEOUT)
    assert attached["answer"] == start["answer"]
    resumed = await second.receive_json_from(timeout=TIMEOUT)
    assert resumed["type"] == "start"
    assert resumed["resumed"] is True
    frames = await frames_until(second, "done")
    everything = "".join(content for _, content in pieces)
    assert resumed["content"] + joined(frames, "content") == everything
    assert (await frames_until(first, "done"))[-1]["content"] == everything
    assert streams.view_group(start["answer"]) not in group_sends
    await first.disconnect()
    await second.disconnect()
