"""The chat with the real engine (vLLM serving the SmolLM2 demo model under the supervisor).

First through the socket in-process, then as a person would: in Chromium, against a Daphne
process on the same stack. The measured time to first token is written to
test-artifacts/chat-ttft.txt next to the screenshot.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from playwright.sync_api import expect

from chat.models import Message
from tests.browser import (  # noqa: F401 - browser_fixture is a fixture
    ARTIFACTS,
    PASSWORD,
    browser_fixture,
    chromium_executable,
    log_in,
    screenshot,
)
from tests.chat_socket import (
    chat_socket,
    frames_until,
    joined,
    loop_cleaned_up,  # noqa: F401 - fixture
    settled,
)
from tests.stack import Stack

pytestmark = pytest.mark.engine

QUESTION = "What is the capital of France?"
LONG_QUESTION = "Write a long story about a lighthouse keeper and his cat."


def running_requests(stack: Stack) -> float:
    """vLLM's own count of requests it is working on (from its /metrics)."""
    metrics = stack.engine_get("/metrics", timeout=10).text
    for line in metrics.splitlines():
        if line.startswith("vllm:num_requests_running"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("vLLM's /metrics has no vllm:num_requests_running")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_the_real_engine_streams_a_real_answer_over_the_socket(alice: Any, engine_stack: Stack) -> None:
    await database_sync_to_async(engine_stack.register_in_test_db)()
    socket = await chat_socket(alice)
    params = {"temperature": 0, "max_tokens": 40}
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": QUESTION, "params": params})
    frames = await frames_until(socket, "done", timeout=120)
    done = frames[-1]
    assert frames[0]["model"] == engine_stack.served_model
    assert "Paris" in joined(frames, "content")
    assert done["status"] == "complete"
    assert done["usage"]["prompt_tokens"] > 0
    assert done["usage"]["completion_tokens"] > 0
    assert done["usage"]["estimated"] is False
    assert done["ttft_ms"] > 0
    answer = await settled(done["answer"])
    assert answer.content == joined(frames, "content")
    assert answer.completion_tokens == done["usage"]["completion_tokens"]
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loop_cleaned_up")
async def test_stop_makes_the_real_engine_abort_the_request(alice: Any, engine_stack: Stack) -> None:
    await database_sync_to_async(engine_stack.register_in_test_db)()
    socket = await chat_socket(alice)
    params = {"temperature": 0, "max_tokens": 1500}
    await socket.send_json_to({"type": "chat.send", "conversation": None, "content": LONG_QUESTION, "params": params})
    await frames_until(socket, "delta", timeout=120)
    assert await asyncio.to_thread(running_requests, engine_stack) >= 1
    await socket.send_json_to({"type": "chat.stop"})
    frames = await frames_until(socket, "done", timeout=30)
    assert frames[-1]["status"] == "stopped"
    answer: Message = await settled(frames[-1]["answer"])
    assert answer.status == "stopped"
    assert answer.content
    # vLLM drops the request once its stream is closed, long before 1500 tokens.
    deadline = time.monotonic() + 20
    while await asyncio.to_thread(running_requests, engine_stack) > 0:
        assert time.monotonic() < deadline, "vLLM still runs the stopped request"
        await asyncio.sleep(0.5)
    await socket.disconnect()


@pytest.fixture(scope="module")
def engine_web(engine_stack: Stack) -> str:
    """A Daphne process on the engine stack, with alice as a member."""
    chromium_executable()
    url, _ = engine_stack.start_web()
    engine_stack.add_member("alice", PASSWORD)
    return url


WATCH_ANSWER = """() => {
  window.__chat = {updates: 0, lengths: []};
  document.getElementById('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter') { window.__chat.sent = performance.now(); }
  }, true);
  new MutationObserver(() => {
    const body = document.querySelector('.msg-assistant:last-child .answer-body');
    const length = body ? body.textContent.trim().length : 0;
    const lengths = window.__chat.lengths;
    if (length && length !== lengths[lengths.length - 1]) {
      if (!window.__chat.first) { window.__chat.first = performance.now(); }
      lengths.push(length);
    }
  }).observe(document.getElementById('thread'), {subtree: true, childList: true, characterData: true});
}"""


def test_a_person_asks_and_watches_the_answer_stream_in(browser: Any, engine_web: str) -> None:
    page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    log_in(page, engine_web, "alice")
    expect(page.locator("#engine-status")).to_contain_text("ready", timeout=30_000)
    # Greedy decoding: the 135M demo model then answers this one with "... is Paris."
    page.click("#toggle-settings")
    page.fill("#set-temperature", "0")
    page.evaluate(WATCH_ANSWER)
    page.fill("#prompt", QUESTION)
    page.press("#prompt", "Enter")
    answer = page.locator(".msg-assistant").last
    expect(answer).to_have_attribute("data-status", "complete", timeout=120_000)
    watched = page.evaluate("window.__chat")
    ttft_ms = watched["first"] - watched["sent"]
    assert "Paris" in answer.locator(".answer-body").inner_text()
    # The answer grew on the page in several steps: tokens arrived, not one block at the end.
    assert len(watched["lengths"]) >= 2, watched["lengths"]
    meta = answer.locator(".msg-meta").inner_text()
    assert "tokens" in meta
    assert "first token" in meta
    shot = screenshot(page, "chat-real-engine")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chat-ttft.txt").write_text(
        f"time to first token in the browser: {ttft_ms:.0f} ms (Enter to first answer text)\n"
        f"answer footer: {meta}\nscreenshot: {shot}\n"
    )
    print(f"\nbrowser time to first token: {ttft_ms:.0f} ms; {meta}")
    page.context.close()


def test_with_the_real_engine_reload_continues_and_stop_keeps_the_answer(browser: Any, engine_web: str) -> None:
    page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    log_in(page, engine_web, "alice")
    page.click("#toggle-settings")
    page.fill("#set-max-tokens", "250")
    page.fill("#set-temperature", "0")
    page.fill("#prompt", LONG_QUESTION)
    page.press("#prompt", "Enter")
    body = page.locator(".msg-assistant").last.locator(".answer-body")
    expect(body).not_to_be_empty(timeout=120_000)
    page.wait_for_url(f"{engine_web}/chat/*/")
    before = body.inner_text()
    page.reload()
    answer = page.locator(".msg-assistant").last
    expect(answer.locator(".answer-body")).to_contain_text(before[:20], timeout=30_000)
    expect(answer).to_have_attribute("data-status", "complete", timeout=120_000)
    story = answer.locator(".answer-body").inner_text()
    assert len(story) > len(before)
    # Stop the next answer halfway; the part written so far stays, also after a reload.
    page.fill("#prompt", "Now tell it again, longer.")
    page.press("#prompt", "Enter")
    # nth(1), not last: until the new answer appears, the last one is the finished first answer.
    second = page.locator(".msg-assistant").nth(1)
    expect(second.locator(".answer-body")).not_to_be_empty(timeout=120_000)
    page.click("#stop")
    expect(second).to_have_attribute("data-status", "stopped", timeout=30_000)
    partial = second.locator(".answer-body").inner_text()
    page.reload()
    answers = page.locator(".msg-assistant")
    expect(answers).to_have_count(2)
    expect(answers.nth(1)).to_have_attribute("data-status", "stopped")
    assert answers.nth(0).locator(".answer-body").inner_text() == story
    assert answers.nth(1).locator(".answer-body").inner_text() == partial
    page.context.close()
