"""gpt-oss's reasoning through /v1 and into the ledger and the audit trail, with the real engines.

The tiny gpt-oss engine (tests/gptoss_stack.py) always reasons "The user says hi" and
answers "Hello! I am a tiny model.": 22 completion tokens, 4 of them reasoning. The API
tests use the official ``openai`` client against a Daphne process on the stack (its own
database, read back with ``Stack.query``); the chat test goes through the WebSocket
consumer in-process, on pytest-django's database.
"""

from __future__ import annotations

import secrets
from typing import Any

import openai
import pytest
from channels.db import database_sync_to_async
from openai.types.chat import ChatCompletionMessageParam

from accounts.models import Reservation, UsageCounter
from portal.audit.models import Event
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
)
from tests.gptoss_stack import ANSWER, REASONING, SERVED_MODEL, GptOssEngine
from tests.stack import Stack
from tests.test_api_engine import client, new_key, shell

pytestmark = pytest.mark.engine

GREETING: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Please greet me."}]
COMPLETION_TOKENS = 22
REASONING_TOKENS = 4
TIMEOUT = 120


@pytest.fixture(scope="module")
def oss_portal(gptoss_engine: GptOssEngine) -> tuple[Stack, openai.OpenAI]:
    """A web process on the stack (both engines ready) and an API client of a member."""
    stack = gptoss_engine.stack
    url, _ = stack.start_web()
    username = f"oss{secrets.token_hex(3)}"
    shell(
        stack,
        "from django.contrib.auth import get_user_model; from accounts.roles import MEMBERS, assign_role; "
        f"assign_role(get_user_model().objects.create_user({username!r}, password='x' * 20), MEMBERS)",
    )
    return stack, client(f"{url}/v1", new_key(stack, username))


def reasoning_of(message: Any) -> Any:
    """The ``reasoning`` field the openai client keeps as an extra (it is not in its types)."""
    return (message.model_extra or {}).get("reasoning")


def test_a_whole_answer_carries_the_reasoning_and_the_reasoning_token_count(oss_portal: Any) -> None:
    _, api = oss_portal
    answer = api.chat.completions.create(model=SERVED_MODEL, messages=GREETING)
    message = answer.choices[0].message
    assert (reasoning_of(message), message.content) == (REASONING, ANSWER)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == COMPLETION_TOKENS
    assert answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + COMPLETION_TOKENS


def test_a_stream_sends_the_reasoning_before_the_answer_and_usage_last(oss_portal: Any) -> None:
    _, api = oss_portal
    chunks = list(
        api.chat.completions.create(
            model=SERVED_MODEL, messages=GREETING, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(reasoning_of(delta) or "" for delta in deltas) == REASONING
    assert "".join(delta.content or "" for delta in deltas) == ANSWER
    kinds = [
        "reasoning" if reasoning_of(delta) else "content" for delta in deltas if reasoning_of(delta) or delta.content
    ]
    assert kinds[0] == "reasoning"
    assert kinds == sorted(kinds, key=["reasoning", "content"].index)
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == COMPLETION_TOKENS
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_the_demo_models_api_answer_has_no_reasoning_and_no_reasoning_count(oss_portal: Any) -> None:
    stack, api = oss_portal
    answer = api.chat.completions.create(model=stack.served_model, messages=GREETING, max_tokens=5, temperature=0)
    assert answer.choices[0].message.content
    assert reasoning_of(answer.choices[0].message) is None
    assert answer.usage is not None
    # vLLM counts no reasoning without a reasoning parser: unknown, so left out, not 0.
    assert answer.usage.completion_tokens_details is None


def test_an_api_generation_settles_and_audits_its_reasoning_tokens(oss_portal: Any) -> None:
    stack, api = oss_portal
    answer = api.chat.completions.create(model=SERVED_MODEL, messages=GREETING)
    assert answer.usage is not None
    request_id = answer.id.removeprefix("chatcmpl-")
    [(prompt, completion, outcome)] = stack.query(
        "SELECT used_prompt_tokens, used_completion_tokens, outcome FROM accounts_reservation WHERE request_id = ?",
        (request_id,),
    )
    assert (prompt, completion, outcome) == (answer.usage.prompt_tokens, COMPLETION_TOKENS, "complete")
    [(channel, completion_tokens, reasoning_tokens)] = stack.query(
        "SELECT channel, completion_tokens, reasoning_tokens FROM audit_event "
        "WHERE action = 'generation' AND request_id = ?",
        (request_id,),
    )
    assert (channel, completion_tokens, reasoning_tokens) == ("api", COMPLETION_TOKENS, REASONING_TOKENS)


# --- the chat (WebSocket), on pytest-django's database ---------------------------------------


def _ledger_and_event(user: Any, model: str) -> tuple[Reservation, UsageCounter, Event]:
    reservation = Reservation.objects.get(user=user, model=model)
    event = Event.objects.get(action="generation", request_id=reservation.request_id)
    return reservation, UsageCounter.objects.get(user=user), event


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_chat_generation_counts_reasoning_tokens_in_the_ledger_and_the_audit_event(
    alice: Any, gptoss_engine: GptOssEngine
) -> None:
    def register() -> None:
        gptoss_engine.register_in_test_db()
        gptoss_engine.stack.register_in_test_db()

    await database_sync_to_async(register)()
    socket = await chat_socket(alice)
    await socket.send_json_to(
        {"type": "chat.send", "conversation": None, "content": "Please greet me.", "params": {"model": SERVED_MODEL}}
    )
    tiny = await frames_until(socket, "done", timeout=TIMEOUT)
    assert joined(tiny, "reasoning") == REASONING
    prompt = tiny[-1]["usage"]["prompt_tokens"]
    reservation, counter, event = await database_sync_to_async(_ledger_and_event)(alice, SERVED_MODEL)
    assert (reservation.used_prompt_tokens, reservation.used_completion_tokens) == (prompt, COMPLETION_TOKENS)
    assert counter.day_tokens == prompt + COMPLETION_TOKENS
    assert (event.channel, event.completion_tokens) == ("chat", COMPLETION_TOKENS)
    assert event.reasoning_tokens == REASONING_TOKENS

    demo_model = gptoss_engine.stack.served_model
    await socket.send_json_to(
        {
            "type": "chat.send",
            "conversation": tiny[0]["conversation"],
            "content": "What is the capital of France?",
            "params": {"model": demo_model, "max_tokens": 5, "temperature": 0},
        }
    )
    demo = (await frames_until(socket, "done", timeout=TIMEOUT))[-1]
    assert demo["status"] == "complete"
    reservation, moved, event = await database_sync_to_async(_ledger_and_event)(alice, demo_model)
    assert reservation.used_completion_tokens == demo["usage"]["completion_tokens"]
    assert moved.day_tokens - counter.day_tokens == demo["usage"]["total_tokens"]
    assert event.completion_tokens == demo["usage"]["completion_tokens"]
    assert event.reasoning_tokens is None
    await socket.disconnect()
