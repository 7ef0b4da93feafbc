"""The generation hooks end to end over the chat socket: order, veto, failure isolation, timeouts.

The upstream is the deterministic stub (tests/chat_stub_engine.py), which records what it
received: these tests are about what reaches the engine and the user, not about the model.
The dummy plugin's ``before_generate`` hook acts on markers (tests/plugins/dummy_plugin).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from channels.db import database_sync_to_async

from inference import generation
from portal import hooks
from portal.plugins import AFTER_GENERATE, BEFORE_GENERATE, PromptCheck
from portal.plugins.generation_hooks import PromptCheckFailed, PromptRefused, check_prompt
from tests.api_client import call, chat, key_for, ledger_fixture  # noqa: F401 - fixture
from tests.chat_socket import (
    chat_socket,
    frames_until,
    loop_cleaned_up,  # noqa: F401 - fixture
    saved_counts,
    settled,
    stub_fixture,  # noqa: F401 - fixture
)
from tests.plugins.dummy_plugin.hooks import REPORTS

QUESTION = [{"role": "user", "content": "hello"}]


def send(content):
    return {"type": "chat.send", "conversation": None, "content": content, "params": {}}


@pytest.fixture
def reservations(monkeypatch):
    """Count the quota reservations (the ledger's seam in inference.generation)."""
    made = []
    original = generation.reserve_usage

    def counted(prepared, policy):
        made.append(prepared)
        return original(prepared, policy)

    monkeypatch.setattr(generation, "reserve_usage", counted)
    return made


# --- order and the check itself -----------------------------------------------------------


def test_hooks_run_by_order_then_registration(db):
    calls = []

    def named(name):
        return lambda check: calls.append(name)

    with (
        hooks.register_temporarily(BEFORE_GENERATE, named("late"), order=100),
        hooks.register_temporarily(BEFORE_GENERATE, named("first"), order=-10),
        hooks.register_temporarily(BEFORE_GENERATE, named("second"), order=0),
        hooks.register_temporarily(BEFORE_GENERATE, named("third"), order=0),
    ):
        check_prompt(None, QUESTION, model=None, source="chat")
    assert calls == ["first", "second", "third", "late"]


def test_a_later_hook_sees_what_an_earlier_one_changed(alice):
    seen = []
    with hooks.register_temporarily(
        BEFORE_GENERATE, lambda check: seen.append(check.messages[-1]["content"]), order=99
    ):
        checked = check_prompt(alice, [{"role": "user", "content": "[dummy:shout] hi"}], model=None, source="chat")
    assert seen == ["[DUMMY:SHOUT] HI!"], "the dummy (order 50) ran first and changed the question"
    assert checked.messages == [{"role": "user", "content": "[DUMMY:SHOUT] HI!"}]
    assert checked.notices == ("The dummy plugin upper-cased your question.",)


def test_a_hook_sees_the_users_groups_and_the_request(alice):
    seen: list[PromptCheck] = []
    with hooks.register_temporarily(BEFORE_GENERATE, seen.append):
        check_prompt(alice, QUESTION, model="m", source="api")
    assert (seen[0].user, seen[0].groups, seen[0].model, seen[0].source) == (alice, frozenset({"Members"}), "m", "api")


def test_the_callers_messages_are_not_changed_by_a_hook(alice):
    messages = [{"role": "user", "content": "[dummy:shout] hi"}]
    check_prompt(alice, messages, model=None, source="chat")
    assert messages == [{"role": "user", "content": "[dummy:shout] hi"}]


@pytest.mark.parametrize(
    "breaks",
    [
        lambda check: setattr(check, "messages", "not a list"),
        lambda check: setattr(check, "messages", []),
        lambda check: check.messages.append({"role": "robot", "content": "x"}),
        lambda check: check.messages.append({"role": "user", "content": 5}),
    ],
)
def test_a_hook_that_leaves_messages_the_engine_cannot_take_fails_closed(alice, breaks):
    with hooks.register_temporarily(BEFORE_GENERATE, breaks), pytest.raises(PromptCheckFailed):
        check_prompt(alice, QUESTION, model=None, source="chat")


def test_a_refusal_names_the_plugin(alice):
    with pytest.raises(PromptRefused) as refused:
        check_prompt(alice, [{"role": "user", "content": "[dummy:refuse]"}], model=None, source="chat")
    assert refused.value.plugin == "dummy"
    assert refused.value.message == "The dummy plugin does not let this through."


def test_a_raising_hook_is_logged_with_its_plugins_name(alice, caplog):
    with caplog.at_level(logging.ERROR, "portal.plugins"), pytest.raises(PromptCheckFailed) as failed:
        check_prompt(alice, [{"role": "user", "content": "[dummy:raise]"}], model=None, source="chat")
    assert failed.value.plugin == "dummy"
    assert "before_generate hook of plugin dummy failed" in caplog.text
    assert "the dummy plugin broke" in caplog.text


def test_a_slow_hook_is_cut_off_at_the_timeout(alice, settings, caplog):
    settings.PORTAL_PLUGIN_HOOK_TIMEOUT = 0.3
    began = time.monotonic()
    with caplog.at_level(logging.ERROR, "portal.plugins"), pytest.raises(PromptCheckFailed, match="in time"):
        check_prompt(alice, [{"role": "user", "content": "[dummy:slow]"}], model=None, source="chat")
    assert time.monotonic() - began < 1.5
    assert "plugin dummy timed out" in caplog.text


# --- over the chat socket -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_veto_reaches_the_user_as_a_message_and_nothing_is_saved_or_reserved(alice, stub, reservations):
    socket = await chat_socket(alice)
    await socket.send_json_to(send("Tell me [dummy:refuse] something"))
    (error,) = await frames_until(socket, "error")
    assert error["code"] == "refused_by_plugin"
    assert error["message"] == "The dummy plugin does not let this through."
    assert error["plugin"] == "dummy"
    assert await saved_counts() == (0, 0)
    assert reservations == []
    assert stub.requests == []
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
@pytest.mark.parametrize(("marker", "words"), [("[dummy:raise]", "failed"), ("[dummy:slow]", "in time")])
async def test_a_raising_or_slow_hook_fails_closed_without_hanging_and_the_socket_goes_on(
    alice, stub, reservations, settings, marker, words
):
    settings.PORTAL_PLUGIN_HOOK_TIMEOUT = 0.5
    socket = await chat_socket(alice)
    began = time.monotonic()
    await socket.send_json_to(send(f"Hi {marker}"))
    (error,) = await frames_until(socket, "error", timeout=5)
    assert time.monotonic() - began < 3
    assert error["code"] == "plugin_failed"
    assert words in error["message"]
    assert await saved_counts() == (0, 0)
    assert reservations == []
    # The same socket still works for the next question.
    await socket.send_json_to(send("And now a normal question"))
    frames = await frames_until(socket, "done")
    assert frames[-1]["status"] == "complete"
    assert len(reservations) == 1
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_changed_question_is_what_the_engine_gets_and_the_user_is_told(alice, stub):
    socket = await chat_socket(alice)
    await socket.send_json_to(send("[dummy:shout] quiet please"))
    frames = await frames_until(socket, "done")
    assert frames[0]["notices"] == ["The dummy plugin upper-cased your question."]
    assert stub.requests[-1]["messages"][-1] == {"role": "user", "content": "[DUMMY:SHOUT] QUIET PLEASE!"}
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_after_generate_hooks_get_the_settled_answer_and_a_failing_one_does_not_stop_the_rest(
    alice, stub, caplog
):
    REPORTS.clear()

    def broken(report):
        raise RuntimeError("after hook broke")

    with hooks.register_temporarily(AFTER_GENERATE, broken, order=-1), caplog.at_level(logging.ERROR):
        socket = await chat_socket(alice)
        await socket.send_json_to(send("Hello"))
        frames = await frames_until(socket, "done")
        for _ in range(100):
            if REPORTS:
                break
            await asyncio.sleep(0.05)
    (report,) = REPORTS
    assert (report.user_id, report.source, report.status, report.content) == (
        alice.pk,
        "chat",
        "complete",
        "Hello world",
    )
    assert report.request_id == (await settled(frames[0]["answer"])).request_id
    assert "after_generate hook of plugin" in caplog.text
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_a_slow_after_generate_hook_does_not_delay_the_done_frame(alice, stub):
    release = threading.Event()

    def slow(report):
        release.wait(10)

    with hooks.register_temporarily(AFTER_GENERATE, slow):
        socket = await chat_socket(alice)
        began = time.monotonic()
        await socket.send_json_to(send("Hello"))
        frames = await frames_until(socket, "done", timeout=5)
        assert time.monotonic() - began < 2
        # The next answer is not held up either.
        await socket.send_json_to(send("Again") | {"conversation": frames[-1]["conversation"]})
        again = await frames_until(socket, "done", timeout=5)
        assert again[-1]["status"] == "complete"
        release.set()
    await socket.disconnect()


# --- over the /v1 API -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [("[dummy:refuse]", 403, "refused_by_plugin"), ("[dummy:raise]", 503, "plugin_failed")],
)
async def test_the_api_answers_a_plugin_refusal_or_failure_with_its_status_and_reserves_nothing(
    alice, stub, ledger, marker, status, code
):
    secret = await database_sync_to_async(key_for)(alice)
    reply = await call(chat(messages=[{"role": "user", "content": f"Hi {marker}"}]), key=secret)
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert error["code"] == code
    assert error["plugin"] == "dummy"
    assert ledger.reserved == []
    assert stub.requests == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_the_api_sends_the_checked_messages_to_the_engine(alice, stub, ledger):
    secret = await database_sync_to_async(key_for)(alice)
    reply = await call(chat(messages=[{"role": "user", "content": "[dummy:shout] psst"}]), key=secret)
    assert reply.status == 200, reply.body
    assert stub.requests[-1]["messages"][-1]["content"] == "[DUMMY:SHOUT] PSST!"
