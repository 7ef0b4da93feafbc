"""Property-based fuzzing of /v1/chat/completions bodies: never a 500, and a refusal takes no quota.

Bodies are drawn around the real schema (valid fields with wrong values, unknown fields,
arbitrary JSON, arbitrary bytes) and sent through the real ASGI application to the stub
engine. Example counts come from tests/hypothesis_settings.py (small by default, fixed in CI).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import tests.hypothesis_settings  # noqa: F401 - registers and loads the profile
from inference.api.requests import ACCEPTED
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
safe_text = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=20)
valid_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": safe_text},
        optional={"reasoning": safe_text},
    ),
    max_size=2,
).map(lambda messages: [*messages, {"role": "user", "content": "Hello?"}])
valid_fields = {
    "stream": st.booleans(),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "max_tokens": st.integers(1, 50),
    "n": st.just(1),
    "stop": st.lists(safe_text, min_size=1, max_size=4),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
    "response_format": st.just({"type": "json_object"}),
    "tool_choice": st.just("none"),
    "user": safe_text,
}
valid = st.fixed_dictionaries({"model": st.just("stub-model"), "messages": valid_messages}, optional=valid_fields)
# A valid body with one field set to anything (or one unknown field added).
mutated = st.tuples(valid, st.sampled_from([*sorted(ACCEPTED), "logit_bias", "best_of"]), json_values).map(
    lambda drawn: {**drawn[0], drawn[1]: drawn[2]}
)
messy_messages = st.fixed_dictionaries(
    {"role": roles, "content": contents},
    optional={"name": json_values, "reasoning": json_values, "tool_calls": json_values},
)
with_messy_messages = st.tuples(valid, st.lists(messy_messages, max_size=3) | json_values).map(
    lambda drawn: {**drawn[0], "messages": drawn[1]}
)
bodies = valid | mutated | with_messy_messages | json_values


async def exchange(secret: str, body: Any = None, raw: bytes | None = None) -> Reply:
    """One request in its own event loop (asyncio.run, not async_to_sync; its engine client goes with it).

    Under an outer async_to_sync, Django's inner one (the sync middleware calling the async
    view) would block the thread that the generation's settlement is sent to: a deadlock
    that only this harness could cause, since Daphne's loop is not one of async_to_sync's.
    """
    return await call(body, raw=raw, key=secret)


def check(reply: Reply, ledger: LedgerSpy, reserved_before: int, seen: set[int]) -> None:
    event(f"status {reply.status}")
    seen.add(reply.status)
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
    seen: set[int] = set()

    @given(body=bodies)
    def one(body: Any) -> None:
        before = len(ledger.reserved)
        check(asyncio.run(exchange(secret, body)), ledger, before, seen)

    one()
    # The bodies reach the engine too, not only the validation.
    assert 200 in seen


def test_fuzzed_bytes_never_get_a_500(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    secret = key_for(alice)
    seen: set[int] = set()

    @given(raw=st.binary(max_size=200))
    def one(raw: bytes) -> None:
        before = len(ledger.reserved)
        check(asyncio.run(exchange(secret, raw=raw)), ledger, before, seen)

    one()
