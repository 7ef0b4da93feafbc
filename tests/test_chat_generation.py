"""The generation service on its own (inference/generation.py), with a sink that records.

The chat socket tests cover it through the protocol; these pin down the edges that are hard
to reach from a socket: a slow channel layer, a stop before the first token, settlement.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from inference.generation import STOP_BY_USER, Frame, Generation, Outcome, prepare
from inference.rejections import GenerationRejected
from inference.sampling import parse_sampling
from tests.chat_socket import (
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]


class RecordingSink:
    """Records what a generation reports; ``frame_delay`` plays a slow channel layer."""

    def __init__(self, frame_delay: float = 0.0) -> None:
        self.frame_delay = frame_delay
        self.started = 0
        self.frames: list[Frame] = []
        self.persisted: list[Outcome] = []
        self.finished: list[Outcome] = []

    async def on_start(self, generation: Generation) -> None:
        self.started += 1

    async def on_frame(self, generation: Generation, frame: Frame) -> None:
        self.frames.append(frame)
        await asyncio.sleep(self.frame_delay)

    def persist(self, outcome: Outcome) -> None:
        self.persisted.append(outcome)

    async def on_finish(self, generation: Generation, outcome: Outcome) -> None:
        self.finished.append(outcome)


async def prepared_for(user: Any, **params: Any) -> Any:
    def prepared() -> Any:
        # parse_sampling reads the user's policy (max tokens per answer): the database again.
        sampling = parse_sampling(params, user)
        return prepare(user.pk, [{"role": "user", "content": "hi"}], sampling, source="chat")

    return await database_sync_to_async(prepared)()


async def test_text_that_arrives_while_a_frame_is_being_sent_is_not_lost(alice, stub):
    # The engine dies while the first frame is still being sent.
    stub.script = Script(pieces=[("", "one "), ("", "two "), ("", "three "), ("", "four")], crash_after=3, delay=0.05)
    sink = RecordingSink(frame_delay=0.4)
    outcome = await Generation(await prepared_for(alice), sink).run()
    assert outcome.status == "interrupted"
    assert outcome.content == "one two three "
    assert "".join(frame.content for frame in sink.frames) == "one two three "
    assert sink.persisted == [outcome]
    assert sink.finished == [outcome]


async def test_a_stop_before_the_first_token_settles_once_and_asks_nothing(alice, stub):
    sink = RecordingSink()
    generation = Generation(await prepared_for(alice), sink)
    generation.stop(STOP_BY_USER)
    outcome = await generation.run()
    assert outcome.status == "stopped"
    assert outcome.content == ""
    assert stub.requests == []
    assert len(sink.persisted) == len(sink.finished) == 1


async def test_stopping_twice_or_after_the_end_changes_nothing(alice, stub):
    sink = RecordingSink()
    generation = Generation(await prepared_for(alice), sink)
    task = asyncio.create_task(generation.run())
    outcome = await task
    generation.stop(STOP_BY_USER)
    generation.stop(STOP_BY_USER)
    assert outcome.status == "complete"
    assert outcome.content == "Hello world"
    assert outcome.usage() == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13, "estimated": False}
    assert len(sink.persisted) == 1


async def test_a_cancellation_that_is_not_a_stop_keeps_the_answer_as_interrupted(alice, stub):
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    sink = RecordingSink()
    task = asyncio.create_task(Generation(await prepared_for(alice), sink).run())
    while not sink.frames:
        await asyncio.sleep(0.01)
    task.cancel()  # what the process does to its tasks when it shuts down
    with pytest.raises(asyncio.CancelledError):
        await task
    [outcome] = sink.persisted
    assert (outcome.status, outcome.error_code) == ("interrupted", "cancelled")
    assert outcome.content.startswith("x ")
    assert sink.finished == [outcome]
    assert await asyncio.to_thread(stub.closed_early.wait, 5)


async def test_the_answer_comes_from_the_engine_picked_when_it_was_prepared(alice, stub):
    from inference.models import EngineState

    prepared = await prepared_for(alice)
    # The engine is no longer the one pick_engine would choose; the request was already announced.
    await database_sync_to_async(EngineState.objects.update)(state=EngineState.State.LOADING)
    outcome = await Generation(prepared, RecordingSink()).run()
    assert (outcome.status, outcome.content) == ("complete", "Hello world")
    assert outcome.engine == prepared.target.name
    assert len(stub.requests) == 1


async def test_usage_is_estimated_from_the_stream_when_the_engine_sends_none(alice, stub):
    stub.script = Script(pieces=[("hm", ""), ("", "a"), ("", "b")], usage=False)
    outcome = await Generation(await prepared_for(alice), RecordingSink()).run()
    assert outcome.usage() == {"prompt_tokens": None, "completion_tokens": 3, "total_tokens": 3, "estimated": True}
    assert outcome.reasoning == "hm"


async def test_reasoning_effort_is_only_sent_to_reasoning_engines(alice, stub):
    from inference.models import EngineConfig

    await Generation(await prepared_for(alice, reasoning_effort="low"), RecordingSink()).run()
    await database_sync_to_async(EngineConfig.objects.update)(reasoning_parser="")
    await Generation(await prepared_for(alice, reasoning_effort="low"), RecordingSink()).run()
    assert stub.requests[0]["reasoning_effort"] == "low"
    assert "reasoning_effort" not in stub.requests[1]


async def test_an_unknown_model_is_refused_with_the_engines_state(alice, stub):
    with pytest.raises(GenerationRejected) as refused:
        await prepared_for(alice, model="no-such-model")
    assert refused.value.code == "engine_unavailable"
    assert refused.value.details["state"] == "unknown_model"


async def test_reads_from_the_engine_are_held_back_to_the_frame_pace_and_lose_no_text(alice, stub, monkeypatch):
    # 100 tokens, 4 ms apart: read as they come, that is about 100 reads of the engine's
    # socket; held back until just before each frame (20 a second), about four per frame (the
    # held-back read, the tokens of the last few ms before the frame, the next frame's first).
    import httpx

    reads = 0
    aiter_bytes = httpx.Response.aiter_bytes

    async def counted(self: httpx.Response, *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        async for read in aiter_bytes(self, *args, **kwargs):
            reads += 1  # the stub engine closes-delimits its stream: one item per socket read
            yield read

    monkeypatch.setattr(httpx.Response, "aiter_bytes", counted)
    pieces = [("", f"t{index} ") for index in range(100)]
    stub.script = Script(pieces=pieces, delay=0.004)
    sink = RecordingSink()
    outcome = await Generation(await prepared_for(alice), sink).run()
    assert outcome.status == "complete"
    assert "".join(frame.content for frame in sink.frames) == "".join(content for _, content in pieces)
    # The first token is not held back: it is the first frame, alone.
    assert sink.frames[0].content == "t0 "
    assert len(sink.frames) <= 20
    assert reads <= len(pieces) // 2, (reads, len(sink.frames))
