"""gpt-oss's path through the chat, with the tiny gpt-oss engine and the demo engine both running.

The tiny model always reasons "The user says hi" and answers "Hello! I am a tiny model."
through vLLM's Harmony prompt and ``openai_gptoss`` reasoning parser (tests/gptoss_stack.py).
What the portal sent to an engine is read from an :class:`EngineTap` in front of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from inference.generation import Generation
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
)
from tests.gptoss_stack import ANSWER, REASONING, SERVED_MODEL, EngineTap, GptOssEngine, route_through_tap
from tests.test_chat_generation import RecordingSink, prepared_for

pytestmark = [
    pytest.mark.engine,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("loop_cleaned_up"),
]

QUESTION = "Please greet me."
TIMEOUT = 120


@pytest.fixture
def taps(gptoss_engine: GptOssEngine) -> Iterator[dict[str, EngineTap]]:
    """Both engines registered in the test database, each behind its own tap."""
    stack = gptoss_engine.stack
    made = {"gptoss": EngineTap(gptoss_engine.base_url), "demo": EngineTap(stack.base_url)}
    yield made
    for tap in made.values():
        tap.close()


async def register(gptoss_engine: GptOssEngine, taps: dict[str, EngineTap] | None = None) -> None:
    def run() -> None:
        gptoss_engine.register_in_test_db()
        gptoss_engine.stack.register_in_test_db()
        if taps:
            route_through_tap(gptoss_engine.name, taps["gptoss"])
            route_through_tap(gptoss_engine.stack.engine_name, taps["demo"])

    await database_sync_to_async(run)()


async def ask(socket: Any, content: str, conversation: int | None = None, **params: Any) -> list[dict[str, Any]]:
    await socket.send_json_to({"type": "chat.send", "conversation": conversation, "content": content, "params": params})
    return await frames_until(socket, "done", timeout=TIMEOUT)


async def test_the_chat_streams_the_reasoning_and_the_answer_apart(
    alice: Any, gptoss_engine: GptOssEngine, taps: dict[str, EngineTap]
) -> None:
    await register(gptoss_engine, taps)
    # vLLM writes the 22 tokens in milliseconds; paced, each chunk becomes a frame of its own.
    taps["gptoss"].chunk_delay = 0.1
    socket = await chat_socket(alice)
    frames = await ask(socket, QUESTION, model=SERVED_MODEL, temperature=1.0)
    done = frames[-1]
    assert frames[0]["model"] == SERVED_MODEL
    assert frames[0]["reasoning_model"] is True
    assert joined(frames, "reasoning") == REASONING
    assert joined(frames, "content") == ANSWER
    # Reasoning frames first, then answer frames; a frame never carries both.
    deltas = [frame for frame in frames if frame["type"] == "delta"]
    kinds = ["reasoning" if frame["reasoning"] else "content" for frame in deltas]
    assert all(not (frame["reasoning"] and frame["content"]) for frame in deltas)
    assert kinds == sorted(kinds, key=["reasoning", "content"].index)
    assert kinds.count("reasoning") >= 2
    assert kinds.count("content") >= 2
    assert done["status"] == "complete"
    # 22 tokens: the Harmony structure, 4 reasoning tokens and 8 answer tokens.
    assert done["usage"]["completion_tokens"] == 22
    answer = await settled(done["answer"])
    assert (answer.reasoning, answer.content) == (REASONING, ANSWER)
    await socket.disconnect()


async def test_routing_by_model_name_reaches_each_of_two_real_engines(alice: Any, gptoss_engine: GptOssEngine) -> None:
    await register(gptoss_engine)
    socket = await chat_socket(alice)
    demo = gptoss_engine.stack.served_model
    tiny = await ask(socket, QUESTION, model=SERVED_MODEL)
    other = await ask(socket, "What is the capital of France?", model=demo, temperature=0, max_tokens=40)
    assert (tiny[0]["model"], other[0]["model"]) == (SERVED_MODEL, demo)
    assert joined(tiny, "content") == ANSWER
    assert "Paris" in joined(other, "content")
    assert joined(other, "reasoning") == ""
    await socket.disconnect()


async def test_reasoning_effort_reaches_the_reasoning_model_and_not_the_demo_model(
    alice: Any, gptoss_engine: GptOssEngine, taps: dict[str, EngineTap]
) -> None:
    await register(gptoss_engine, taps)
    socket = await chat_socket(alice)
    tiny = await ask(socket, QUESTION, model=SERVED_MODEL, reasoning_effort="high")
    demo = await ask(socket, QUESTION, model=gptoss_engine.stack.served_model, reasoning_effort="high", max_tokens=8)
    assert tiny[-1]["status"] == demo[-1]["status"] == "complete"
    [sent_to_tiny] = taps["gptoss"].chat_bodies()
    [sent_to_demo] = taps["demo"].chat_bodies()
    assert sent_to_tiny["reasoning_effort"] == "high"
    assert "reasoning_effort" not in sent_to_demo
    # vLLM took it (it refuses an effort Harmony does not know) and still reasoned.
    assert joined(tiny, "reasoning") == REASONING
    await socket.disconnect()


async def test_reasoning_of_earlier_turns_is_not_sent_back(
    alice: Any, gptoss_engine: GptOssEngine, taps: dict[str, EngineTap]
) -> None:
    await register(gptoss_engine, taps)
    socket = await chat_socket(alice)
    first = await ask(socket, QUESTION, model=SERVED_MODEL)
    conversation = first[0]["conversation"]
    second = await ask(socket, "And again, please.", conversation=conversation, model=SERVED_MODEL)
    assert joined(second, "reasoning") == REASONING
    earlier, latest = taps["gptoss"].chat_bodies()
    assert [message["role"] for message in latest["messages"]] == ["user", "assistant", "user"]
    assert latest["messages"][1]["content"] == ANSWER
    assert REASONING not in json.dumps(latest)
    assert all(set(message) == {"role", "content"} for message in latest["messages"])
    assert REASONING not in json.dumps(earlier)
    await socket.disconnect()


async def test_a_stop_during_the_reasoning_keeps_the_reasoning_written_so_far(
    alice: Any, gptoss_engine: GptOssEngine, taps: dict[str, EngineTap]
) -> None:
    await register(gptoss_engine, taps)
    # The tiny model answers in milliseconds; the tap lets one chunk through every half second.
    taps["gptoss"].chunk_delay = 0.5
    socket = await chat_socket(alice)
    await socket.send_json_to(
        {"type": "chat.send", "conversation": None, "content": QUESTION, "params": {"model": SERVED_MODEL}}
    )
    frames = await frames_until(socket, "delta", timeout=TIMEOUT)
    assert frames[-1]["reasoning"]
    assert not frames[-1]["content"]
    await socket.send_json_to({"type": "chat.stop"})
    frames += await frames_until(socket, "done", timeout=30)
    done = frames[-1]
    assert done["status"] == "stopped"
    answer = await settled(done["answer"])
    assert answer.status == "stopped"
    assert answer.content == ""
    assert answer.reasoning == joined(frames, "reasoning")
    assert answer.reasoning
    assert REASONING.startswith(answer.reasoning)
    assert answer.reasoning != REASONING
    await socket.disconnect()


async def test_the_outcome_counts_the_reasoning_tokens_the_engine_reports(
    alice: Any, gptoss_engine: GptOssEngine
) -> None:
    await register(gptoss_engine)
    tiny = await Generation(await prepared_for(alice, model=SERVED_MODEL), RecordingSink()).run()
    assert (tiny.completion_tokens, tiny.reasoning_tokens) == (22, 4)
    demo_model = gptoss_engine.stack.served_model
    demo = await Generation(await prepared_for(alice, model=demo_model, max_tokens=5), RecordingSink()).run()
    # Without a reasoning parser vLLM reports no reasoning count: unknown, not zero.
    assert demo.status == "complete"
    assert demo.reasoning_tokens is None
