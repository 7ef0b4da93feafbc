"""The /v1 API in-process, against the stub engine: shapes, pass-through, every error, disconnects.

The stub isolates the portal (exact text, recorded request bodies); the real engine and the
official ``openai`` client are in tests/test_api_engine.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone

from chat.models import Message
from inference.answers import AnswerStatus
from inference.models import EngineConfig, EngineState
from inference.rejections import GenerationRejected
from tests.api_client import LedgerSpy, call, chat, key_for, ledger_fixture  # noqa: F401 - fixture
from tests.chat_socket import (
    loop_cleaned_up,  # noqa: F401 - fixture
    stub_fixture,  # noqa: F401 - fixture
)
from tests.chat_stub_engine import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loop_cleaned_up")]

ERROR_FIELDS = {"message", "type", "param", "code"}


async def key(user: Any, **kwargs: Any) -> str:
    secret: str = await database_sync_to_async(key_for)(user, **kwargs)
    return secret


def assert_error(reply: Any, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) >= ERROR_FIELDS
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return dict(error)


# --- answers ---------------------------------------------------------------------------------


async def test_a_whole_answer_comes_as_a_chat_completion_with_usage(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    reply = await call(chat(), key=await key(alice))
    assert reply.status == 200
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "stub-model"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello world", "reasoning": None}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    assert len(ledger.reserved) == 1
    assert len(ledger.settled) == 1


async def test_the_api_passes_source_api_and_the_key_prefix_to_the_generation(
    alice: Any, stub: Any, ledger: LedgerSpy
) -> None:
    secret = await key(alice)
    await call(chat(), key=secret)
    prepared = ledger.reserved[0]
    assert prepared.source == "api"
    assert prepared.api_key_prefix == secret[:11]
    assert prepared.user_id == alice.pk


async def test_a_stream_sends_chunks_reasoning_a_finish_usage_and_done(alice: Any, stub: Any, ledger: Any) -> None:
    stub.script = Script(pieces=[("thinking", ""), ("", "Hello"), ("", " world")])
    body = chat(stream=True, stream_options={"include_usage": True})
    reply = await call(body, key=await key(alice))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[1:] if chunk["choices"]]
    assert "".join(delta.get("content", "") for delta in deltas) == "Hello world"
    assert "".join(delta.get("reasoning", "") for delta in deltas) == "thinking"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 14


async def test_stream_chunks_carry_the_coalesced_frames(alice: Any, stub: Any, ledger: Any) -> None:
    # 60 pieces in ~0.6 s: at most 20 frames a second means far fewer chunks than pieces.
    stub.script = Script(pieces=[("", f"w{index} ") for index in range(60)], delay=0.01)
    reply = await call(chat(stream=True), key=await key(alice))
    text_chunks = [event for event in reply.events()[1:-2] if event["choices"][0]["delta"].get("content")]
    assert "".join(chunk["choices"][0]["delta"]["content"] for chunk in text_chunks).split() == [
        f"w{index}" for index in range(60)
    ]
    assert len(text_chunks) < 40


async def test_without_include_usage_no_usage_chunk_is_sent(alice: Any, stub: Any, ledger: Any) -> None:
    events = (await call(chat(stream=True), key=await key(alice))).events()
    assert all("usage" not in event for event in events[:-1])


async def test_reasoning_of_earlier_answers_is_not_forwarded_and_developer_is_a_system_message(
    alice: Any, stub: Any, ledger: Any
) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "reasoning": "secret thoughts", "reasoning_content": "more"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "How"}, {"type": "text", "text": "are you?"}]},
    ]
    assert (await call(chat(messages=messages), key=await key(alice))).status == 200
    assert stub.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "How\nare you?"},
    ]


async def test_the_extra_openai_parameters_reach_the_engine_and_nothing_else_does(
    alice: Any, stub: Any, ledger: Any
) -> None:
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    body = chat(
        stop=["\n\n"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        response_format={"type": "json_object"},
        tools=tools,
        tool_choice="none",
        user="notebook-1",
        n=1,
        temperature=0.2,
        max_completion_tokens=12,
    )
    assert (await call(body, key=await key(alice))).status == 200
    sent = stub.requests[0]
    assert sent["stop"] == ["\n\n"]
    assert sent["seed"] == 7
    assert sent["presence_penalty"] == 0.5
    assert sent["frequency_penalty"] == -0.5
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "none"
    assert sent["max_tokens"] == 12
    assert sent["temperature"] == 0.2
    assert "user" not in sent
    assert "n" not in sent


async def test_models_lists_the_ready_models_the_key_may_use(alice: Any, stub: Any) -> None:
    reply = await call(method="GET", path="/v1/models", key=await key(alice))
    assert reply.status == 200
    assert [model["id"] for model in reply.json()["data"]] == ["stub-model"]
    limited = await call(method="GET", path="/v1/models", key=await key(alice, models=["stub-model"]))
    assert [model["id"] for model in limited.json()["data"]] == ["stub-model"]


async def test_models_leaves_out_a_model_that_is_not_ready(alice: Any, stub: Any) -> None:
    await database_sync_to_async(EngineState.objects.update)(state=EngineState.State.LOADING, progress=0.3)
    reply = await call(method="GET", path="/v1/models", key=await key(alice))
    assert reply.json() == {"object": "list", "data": []}


# --- disconnects ---------------------------------------------------------------------------------


async def test_a_client_that_disconnects_mid_stream_stops_the_engine_request_and_is_settled(
    alice: Any, stub: Any, ledger: LedgerSpy
) -> None:
    stub.script = Script(pieces=[("", "x ")] * 400, delay=0.02)
    reply = await call(chat(stream=True), key=await key(alice), disconnect_after=3)
    assert reply.status == 200
    assert await asyncio.to_thread(stub.closed_early.wait, 10)
    for _ in range(100):
        if ledger.settled:
            break
        await asyncio.sleep(0.05)
    [(_, outcome)] = ledger.settled
    assert outcome.status == AnswerStatus.INTERRUPTED
    assert 0 < outcome.completion_tokens < 400


# --- errors ----------------------------------------------------------------------------------------

BAD_BODIES = [
    ({"model": "stub-model"}, "messages"),
    (chat(messages=[]), "messages"),
    (chat(messages="hello"), "messages"),
    (chat(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"role": "tool", "content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"content": "hi"}]), "messages[0].role"),
    (chat(messages=[{"role": "user"}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": "   "}]), "messages"),
    (chat(messages=[{"role": "user", "content": "a\x00b"}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": "hi", "tool_calls": []}]), "messages[0].tool_calls"),
    (chat(messages=["hi"]), "messages[0]"),
    (chat(model=None), "model"),
    (chat(model=12), "model"),
    (chat(model=""), "model"),
    (chat(temperature="hot"), "temperature"),
    (chat(temperature=1e308 * 10), "temperature"),
    (chat(temperature=-1), "temperature"),
    (chat(top_p=0), "top_p"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_tokens=1.5), "max_tokens"),
    (chat(max_tokens=True), "max_tokens"),
    (chat(max_tokens=10, max_completion_tokens=20), "max_completion_tokens"),
    (chat(reasoning_effort="extreme"), "reasoning_effort"),
    (chat(stream="yes"), "stream"),
    (chat(stream_options={"include_usage": True}), "stream_options"),
    (chat(stream=True, stream_options={"include_usage": "y"}), "stream_options"),
    (chat(stream=True, stream_options={"other": True}), "stream_options"),
    (chat(n=2), "n"),
    (chat(n=0), "n"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat(stop=[""]), "stop"),
    (chat(stop=5), "stop"),
    (chat(seed=2**64), "seed"),
    (chat(seed="1"), "seed"),
    (chat(presence_penalty=3), "presence_penalty"),
    (chat(frequency_penalty="x"), "frequency_penalty"),
    (chat(response_format={"type": "xml"}), "response_format"),
    (chat(response_format={"type": "json_schema"}), "response_format"),
    (chat(tools=[{"type": "function"}]), "tools"),
    (chat(tools="all"), "tools"),
    (chat(tool_choice="auto"), "tool_choice"),
    (chat(user=["x"]), "user"),
    (chat(logit_bias={"1": 5}), "logit_bias"),
    (chat(prompt_logprobs=5), "prompt_logprobs"),
    (chat(guided_json={}), "guided_json"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
async def test_a_bad_body_is_a_400_naming_the_field_and_takes_no_quota(
    alice: Any, stub: Any, ledger: LedgerSpy, body: Any, param: str
) -> None:
    assert_error(await call(body, key=await key(alice)), 400, param=param)
    assert ledger.reserved == []
    assert stub.requests == []


@pytest.mark.parametrize("raw", [b"{", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null", b"", b"[" * 100_000])
async def test_malformed_json_is_a_400(alice: Any, stub: Any, ledger: LedgerSpy, raw: bytes) -> None:
    assert_error(await call(raw=raw, key=await key(alice)), 400)
    assert ledger.reserved == []


@override_settings(API_MAX_BODY_BYTES=2048)
async def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    secret = await key(alice)
    huge = chat(messages=[{"role": "user", "content": "x" * 5000}])
    assert_error(await call(huge, key=secret), 413, code="body_too_large")
    # Without a Content-Length (chunked), the body is counted as it is read.
    assert_error(await call(raw=b"{" + b" " * 5000, key=secret, headers={"content-length": ""}), 413)
    assert ledger.reserved == []


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_key"),
        ("Basic abc", "malformed_header"),
        ("Bearer", "malformed_header"),
        ("Bearer sk-123", "invalid_key"),
        ("Bearer lp_00000000_" + "a" * 43, "invalid_key"),
    ],
)
async def test_a_missing_or_bad_key_is_a_401(stub: Any, ledger: LedgerSpy, header: str | None, code: str) -> None:
    headers = {"authorization": header} if header is not None else {}
    reply = await call(chat(), headers=headers)
    assert_error(reply, 401, code=code)
    assert (await call(method="GET", path="/v1/models", headers=headers)).status == 401
    assert ledger.reserved == []


async def test_a_session_is_not_a_credential_and_nothing_redirects_to_the_login_page(stub: Any) -> None:
    reply = await call(chat(), headers={"cookie": "sessionid=whatever"})
    assert_error(reply, 401)
    assert_error(await call(method="GET", path="/v1/nothing-here"), 404, code="unknown_url")
    assert_error(await call(method="GET", path="/v1/completions"), 404)


async def test_the_wrong_method_is_a_405(alice: Any, stub: Any) -> None:
    reply = await call(method="GET", key=await key(alice))
    assert_error(reply, 405)
    assert reply.headers["allow"] == "POST"


async def test_revoked_expired_and_deactivated_keys_are_401s(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    from accounts import api_keys
    from accounts.models import ApiKey

    revoked, expired, owners = await key(alice), await key(alice, name="e"), await key(alice, name="o")
    await database_sync_to_async(lambda: api_keys.revoke(api_keys.find(revoked[:11])))()
    await database_sync_to_async(ApiKey.objects.filter(prefix=expired[:11]).update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_error(await call(chat(), key=revoked), 401, code="revoked_key")
    assert_error(await call(chat(), key=expired), 401, code="expired_key")
    alice.is_active = False
    await database_sync_to_async(alice.save)(update_fields=["is_active"])
    assert_error(await call(chat(), key=owners), 401, code="inactive_owner")
    assert ledger.reserved == []


async def test_a_model_outside_the_keys_list_is_a_403_and_an_unknown_one_a_404(
    alice: Any, stub: Any, ledger: LedgerSpy
) -> None:
    await database_sync_to_async(EngineConfig.objects.create)(
        name="other", served_model_name="other-model", model="/models/other"
    )
    limited = await key(alice, models=["other-model"])
    assert_error(await call(chat(), key=limited), 403, code="model_not_allowed", param="model")
    assert_error(await call(chat(model="no-such-model"), key=limited), 404, code="model_not_found")
    assert_error(await call(chat(model="no-such-model"), key=await key(alice)), 404, code="model_not_found")
    assert ledger.reserved == []


async def test_an_engine_that_is_loading_is_a_503_with_its_state_and_progress(alice: Any, stub: Any) -> None:
    await database_sync_to_async(EngineState.objects.update)(state=EngineState.State.LOADING, progress=0.45)
    reply = await call(chat(), key=await key(alice))
    error = assert_error(reply, 503, code="engine_unavailable")
    assert error["state"] == "loading"
    assert error["progress"] == 0.45
    assert "45%" in error["message"]
    assert reply.headers["retry-after"]


@pytest.mark.parametrize(
    ("code", "details", "retry_after"),
    [
        ("quota_exceeded", {"resets_at": "2999-01-01T00:00:00+00:00", "limit": "tokens_per_day"}, None),
        ("rate_limited", {"retry_after": 12.2}, "13"),
        ("too_many_answers", {"retry_after": 1}, "1"),
    ],
)
async def test_refusals_of_the_ledger_are_429s_with_retry_after(
    alice: Any, stub: Any, ledger: LedgerSpy, code: str, details: dict[str, Any], retry_after: str | None
) -> None:
    ledger.refuse = GenerationRejected(code, "over the limit", **details)
    reply = await call(chat(), key=await key(alice))
    error = assert_error(reply, 429, code=code)
    assert int(reply.headers["retry-after"]) >= 1
    if retry_after is not None:
        assert reply.headers["retry-after"] == retry_after
    assert {name: error[name] for name in details} == details
    assert stub.requests == []


async def test_a_model_the_policy_refuses_is_a_403(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    ledger.refuse = GenerationRejected("model_not_allowed", "your group may not use stub-model", field="model")
    assert_error(await call(chat(), key=await key(alice)), 403, code="model_not_allowed", param="model")


async def test_an_engine_failure_before_any_text_is_an_error_not_a_500(alice: Any, stub: Any, ledger: Any) -> None:
    stub.script = Script(crash_after=0)
    secret = await key(alice)
    error = assert_error(await call(chat(), key=secret), 503, code="engine_disconnected")
    assert "engine" in error["message"]
    events = (await call(chat(stream=True), key=secret)).events()
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "engine_disconnected"


async def test_the_api_saves_no_chat_messages(alice: Any, stub: Any, ledger: Any) -> None:
    await call(chat(), key=await key(alice))
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_the_key_of_an_owner_who_lost_the_member_role_is_a_403(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    secret = await key(alice)
    await database_sync_to_async(alice.groups.clear)()
    assert_error(await call(chat(), key=secret), 403, code="not_member")
    assert ledger.reserved == []
