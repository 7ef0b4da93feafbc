"""Property-based fuzzing of /v1/chat/completions bodies: never a 500, and a refusal takes no quota.

Bodies are drawn around the real schema (valid fields with wrong values, unknown fields,
arbitrary JSON, arbitrary bytes) and sent through the real ASGI application to the stub
engine. Example counts come from tests/hypothesis_settings.py (small by default, fixed in CI).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from hypothesis import event, given
from hypothesis import strategies as st

import tests.hypothesis_settings  # noqa: F401 - registers and loads the profile
from inference.api.requests import ACCEPTED
from inference.engine_client import aclose_client
from tests.api_client import LedgerSpy, Reply, call, key_for, ledger_fixture  # noqa: F401 - fixture
from tests.chat_socket import stub_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "", "USER"]) | json_values
contents = (
    st.text(max_size=30)
    | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=10)}), max_size=2)
    | json_values
)
messages = st.fixed_dictionaries(
    {"role": roles, "content": contents},
    optional={"name": json_values, "reasoning": json_values, "tool_calls": json_values},
)
plausible = {
    "model": st.sampled_from(["stub-model", "no-such-model"]) | json_values,
    "messages": st.lists(messages, max_size=3) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values}) | json_values,
    "temperature": st.floats(-1, 3) | json_values,
    "top_p": st.floats(-0.5, 1.5) | json_values,
    "max_tokens": st.integers(-5, 10**9) | json_values,
    "max_completion_tokens": st.integers(-5, 50) | json_values,
    "n": st.integers(-1, 3) | json_values,
    "stop": st.lists(st.text(max_size=5), max_size=5) | json_values,
    "seed": st.integers(-(2**64), 2**64) | json_values,
    "reasoning_effort": st.sampled_from(["low", "medium", "high", "max"]) | json_values,
}
fields = {name: plausible.get(name, json_values) for name in ACCEPTED}
others = {name: strategy for name, strategy in fields.items() if name not in ("model", "messages")}
near_valid = st.fixed_dictionaries(
    {"model": st.just("stub-model"), "messages": st.lists(messages, min_size=1, max_size=3)},
    optional={**others, "logit_bias": json_values, "best_of": json_values},
)
bodies = near_valid | st.fixed_dictionaries({}, optional=fields) | json_values


async def exchange(secret: str, body: Any = None, raw: bytes | None = None) -> Reply:
    try:
        return await call(body, raw=raw, key=secret)
    finally:
        await aclose_client()


def check(reply: Reply, ledger: LedgerSpy, reserved_before: int) -> None:
    event(f"status {reply.status}")
    assert reply.status in {200, 400, 404}, reply.body[:500]
    if reply.status != 200:
        error = reply.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error)
        assert len(ledger.reserved) == reserved_before, "a refused request took quota"
        return
    assert len(ledger.settled) == len(ledger.reserved)
    if reply.headers["content-type"] == "text/event-stream":
        assert reply.events()[-1] == "[DONE]"
    else:
        assert reply.json()["object"] == "chat.completion"


def test_fuzzed_bodies_never_get_a_500_and_refusals_take_no_quota(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    secret = key_for(alice)

    @given(body=bodies)
    def one(body: Any) -> None:
        before = len(ledger.reserved)
        check(async_to_sync(exchange)(secret, body), ledger, before)

    one()


def test_fuzzed_bytes_never_get_a_500(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    secret = key_for(alice)

    @given(raw=st.binary(max_size=200))
    def one(raw: bytes) -> None:
        before = len(ledger.reserved)
        check(async_to_sync(exchange)(secret, raw=raw), ledger, before)

    one()
