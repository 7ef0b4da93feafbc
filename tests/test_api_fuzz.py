"""Property-based fuzzing of the /v1 API: never a 500, a clean error, and a refusal takes no quota.

Bodies are drawn around the real schema (valid fields with wrong values, unknown fields,
arbitrary JSON, arbitrary bytes, deep nesting, oversized strings, any Unicode) and sent with
hostile headers and keys through the real ASGI application. Every refusal must be a 4xx with
OpenAI's error object, and the API must still answer a good request afterwards.

The hostile-input fuzzers run ``fuzz_settings`` (2,000 examples in CI, see
tests/hypothesis_settings.py), so each example must be quick: their key may use only a model
no engine serves, so a body that passes validation is refused (404 ``model_not_found``) at the
key's model list, before the plugins' prompt checks, the quota and any engine; afterwards the
stub engine (tests/chat_stub_engine.py) is registered and must answer a new key. One smaller fuzzer (the profile's
count) takes valid and mutated bodies on through the prompt checks and the ledger stub to the
stub engine, since each of those costs ten times a refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from accounts import api_keys
from accounts.models import ApiKey
from inference.api.requests import ACCEPTED
from tests.api_client import LedgerSpy, Reply, call, chat, key_for, ledger_fixture  # noqa: F401 - fixture
from tests.chat_socket import stub_fixture  # noqa: F401 - fixture
from tests.chat_stub_engine import StubEngine, register
from tests.hypothesis_settings import fuzz_settings
from tests.hypothesis_settings import json_values as shared_json_values

pytestmark = pytest.mark.django_db(transaction=True)

# The body limit while fuzzing: small, so that oversized bodies are cheap to make.
OVERSIZED_LIMIT = 8192
UNSERVED_MODEL = "a-model-no-engine-serves"

json_values = shared_json_values(2**70)
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
# Any code point, lone surrogates included (JSON carries them as \\ud800 escapes).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
# Around the body limit the tests set (OVERSIZED_LIMIT): some fit, some get a 413.
oversized = st.integers(OVERSIZED_LIMIT - 200, OVERSIZED_LIMIT + 200).map(lambda size: "x" * size)
numbers = st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 0.5, -0.0, 1e-320])
hostile = (
    st.tuples(
        valid, st.sampled_from(["temperature", "top_p", "max_tokens", "seed", "n", "presence_penalty"]), numbers
    ).map(lambda drawn: {**drawn[0], drawn[1]: drawn[2]})
    | st.tuples(valid, any_text).map(lambda drawn: {**drawn[0], "messages": [{"role": "user", "content": drawn[1]}]})
    | st.tuples(valid, oversized).map(lambda drawn: {**drawn[0], "messages": [{"role": "user", "content": drawn[1]}]})
    | st.tuples(valid, any_text).map(lambda drawn: {**drawn[0], "model": drawn[1]})
    | st.dictionaries(any_text, json_values, max_size=4)
)
bodies = valid | mutated | with_messy_messages | json_values | hostile


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for all of a test's examples, never under ``async_to_sync``.

    A loop of its own, like ``asyncio.run`` (under an outer ``async_to_sync``, Django's inner one,
    the sync middleware calling the async view, would block the thread that the generation's
    settlement is sent to), but kept for every example: a new loop per example starts new
    executor threads each time, which made a refused request four times slower here.
    """
    running = asyncio.new_event_loop()
    yield running
    running.run_until_complete(_finish(asyncio.all_tasks(running)))
    running.run_until_complete(running.shutdown_asyncgens())
    running.run_until_complete(running.shutdown_default_executor())
    running.close()


async def _finish(tasks: set[asyncio.Task[Any]]) -> None:
    """As asyncio.run ends: let what an answer does after its response (settling) finish, cancel the rest.

    A thread left waiting on a closed loop would hang the interpreter's exit.
    """
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def engine(ledger: LedgerSpy, settings: Any, transactional_db: Any) -> Iterator[StubEngine]:
    """The stub engine, running but not registered yet: no engine serves the fuzzers' model."""
    settings.API_MAX_BODY_BYTES = OVERSIZED_LIMIT
    stub = StubEngine()
    yield stub
    stub.close()


def assert_clean_refusal(reply: Reply) -> None:
    """A 4xx with OpenAI's error object: message, type, param and code."""
    assert 400 <= reply.status < 500, (reply.status, reply.body[:500])
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    error = reply.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert isinstance(error["message"], str)
    assert error["message"]


def fuzzers_key(user: Any) -> str:
    """A key of ``user`` for a model no engine serves (set directly: the key form would refuse it)."""
    secret = key_for(user, name="fuzzers")
    ApiKey.objects.filter(name="fuzzers").update(model_names=[UNSERVED_MODEL])
    return secret


def still_answers(loop: asyncio.AbstractEventLoop, engine: StubEngine, ledger: LedgerSpy, user: Any) -> None:
    """After the fuzzing, nothing reached an engine or the quota, and a good request gets a whole answer."""
    assert engine.requests == []
    assert ledger.reserved == []
    register(engine.url)
    reply = loop.run_until_complete(call(chat(), key=key_for(user, name="after")))
    assert reply.status == 200, reply.body[:500]
    assert reply.json()["choices"][0]["message"]["content"] == "Hello world"


def check(reply: Reply, ledger: LedgerSpy, reserved_before: int, seen: set[int]) -> None:
    event(f"status {reply.status}")
    seen.add(reply.status)
    assert reply.status in {200, 400, 404}, reply.body[:500]
    if reply.status != 200:
        assert_clean_refusal(reply)
        assert len(ledger.reserved) == reserved_before, "a refused request took quota"
        return
    assert len(ledger.settled) == len(ledger.reserved)
    if reply.headers["content-type"] == "text/event-stream":
        assert reply.events()[-1] == "[DONE]"
    else:
        assert reply.json()["object"] == "chat.completion"


def test_fuzzed_bodies_are_refused_cleanly_before_the_engine(
    alice: Any, engine: StubEngine, ledger: LedgerSpy, loop: asyncio.AbstractEventLoop
) -> None:
    secret = fuzzers_key(alice)
    seen: set[int] = set()

    @fuzz_settings
    @given(body=bodies)
    # One of each kind always runs: the default profile's few random examples may miss one.
    @example(body={"model": "a-model-the-key-does-not-allow", "messages": [{"role": "user", "content": "hi"}]})
    @example(body={"model": UNSERVED_MODEL, "messages": "not a list"})
    @example(body={"model": UNSERVED_MODEL, "messages": [{"role": "user", "content": "x" * (OVERSIZED_LIMIT + 200)}]})
    def one(body: Any) -> None:
        reply = loop.run_until_complete(call(body, key=secret))
        event(f"status {reply.status}")
        seen.add(reply.status)
        assert_clean_refusal(reply)

    one()
    # Valid bodies got as far as the engine's choice, oversized ones were refused before parsing.
    assert {400, 404, 413} <= seen
    still_answers(loop, engine, ledger, alice)


raw_bodies = (
    st.binary(max_size=200)
    | st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(1, 5_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth)
    | st.text(st.characters(exclude_categories=()), max_size=200).map(
        lambda text: text.encode("utf-8", "surrogatepass")
    )
    | st.integers(OVERSIZED_LIMIT - 10, OVERSIZED_LIMIT + 10).map(lambda size: b"x" * size)
)


def test_fuzzed_bytes_are_refused_cleanly(
    alice: Any, engine: StubEngine, ledger: LedgerSpy, loop: asyncio.AbstractEventLoop
) -> None:
    secret = fuzzers_key(alice)

    @fuzz_settings
    @given(raw=raw_bodies)
    def one(raw: bytes) -> None:
        reply = loop.run_until_complete(call(raw=raw, key=secret))
        event(f"status {reply.status}")
        assert_clean_refusal(reply)

    one()
    still_answers(loop, engine, ledger, alice)


PATHS = [
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models/stub-model",
    "/v1/chat/completions/",
    "/v1//chat/completions",
    "/v1/invocations",
]
schemes = st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  ", "Token "])


def test_fuzzed_requests_with_hostile_headers_keys_and_paths(
    alice: Any, engine: StubEngine, ledger: LedgerSpy, loop: asyncio.AbstractEventLoop
) -> None:
    secret = fuzzers_key(alice)
    revoked, revoked_secret = api_keys.create_key(alice, "revoked")
    api_keys.revoke(revoked)
    prefix = secret.rsplit("_", 1)[0]
    keys = (
        st.sampled_from([secret, revoked_secret, f"{prefix}_forged", secret[:-1], secret + "x", "lp_", ""]) | any_text
    )
    authorization = st.none() | st.builds(lambda scheme, key: scheme + key, schemes, keys)
    headers = st.fixed_dictionaries(
        {},
        optional={
            "authorization": authorization.filter(lambda value: value is not None),
            "content-type": st.sampled_from(
                ["text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"]
            ),
            "content-length": st.sampled_from(["0", "-1", "abc", str(10**20), " 12"]),
            "accept": any_text,
        },
    )

    @fuzz_settings
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
        path=st.sampled_from(PATHS),
        sent=headers,
        body=bodies,
    )
    def one(method: str, path: str, sent: dict[str, str], body: Any) -> None:
        reply = loop.run_until_complete(call(body, method=method, path=path, headers=sent))
        event(f"status {reply.status}")
        authorized = sent.get("authorization", "").strip() in (f"Bearer {secret}", f"bearer {secret}")
        if reply.status == 200:
            # Only the model list answers, and only to the key itself.
            assert (method, path, authorized) == ("GET", "/v1/models", True), sent
            assert reply.json()["object"] == "list"
            return
        if method == "HEAD":
            assert 400 <= reply.status < 500
            return
        assert_clean_refusal(reply)

    one()
    still_answers(loop, engine, ledger, alice)


async def exchange(secret: str, body: Any = None) -> Reply:
    """One request in its own event loop (asyncio.run, not async_to_sync; its engine client goes with it)."""
    return await call(body, key=secret)


def test_fuzzed_bodies_reach_the_engine_and_never_get_a_500(alice: Any, stub: Any, ledger: LedgerSpy) -> None:
    """Valid and mutated bodies go on to the stub engine (the profile's count: an answer is slow)."""
    secret = key_for(alice)
    seen: set[int] = set()

    @given(body=bodies)
    def one(body: Any) -> None:
        before = len(ledger.reserved)
        check(asyncio.run(exchange(secret, body)), ledger, before, seen)

    one()
    # The bodies reach the engine too, not only the validation.
    assert 200 in seen
