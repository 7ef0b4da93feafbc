"""The chat page with the tiny gpt-oss engine, in headless Chromium against Daphne on the stack.

What the page shows is written to test-artifacts/gptoss-page.txt next to the screenshot.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import (  # noqa: F401 - browser_fixture is a fixture
    ARTIFACTS,
    PASSWORD,
    browser_fixture,
    chromium_executable,
    log_in,
    screenshot,
)
from tests.gptoss_stack import ANSWER, REASONING, SERVED_MODEL, GptOssEngine

pytestmark = [pytest.mark.engine, pytest.mark.browser]


@pytest.fixture(scope="module")
def gptoss_web(gptoss_engine: GptOssEngine) -> str:
    """A Daphne process on the stack of both engines, with alice as a member."""
    chromium_executable()
    url, _ = gptoss_engine.stack.start_web()
    gptoss_engine.stack.add_member("alice", PASSWORD)
    return url


def test_the_page_shows_the_reasoning_collapsed_and_the_answer_rendered(
    browser: Any, gptoss_engine: GptOssEngine, gptoss_web: str
) -> None:
    page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    log_in(page, gptoss_web, "alice")
    page.click("#toggle-settings")
    expect(page.locator(f"#set-model option[value='{SERVED_MODEL}']")).to_have_count(1, timeout=30_000)
    # The effort is offered for the reasoning model, not for the demo model.
    page.select_option("#set-model", gptoss_engine.stack.served_model)
    expect(page.locator("#effort-row")).to_be_hidden()
    page.select_option("#set-model", SERVED_MODEL)
    expect(page.locator("#effort-row")).to_be_visible()
    page.select_option("#set-effort", "high")
    page.fill("#prompt", "Please greet me.")
    page.press("#prompt", "Enter")
    answer = page.locator(".msg-assistant").last
    expect(answer).to_have_attribute("data-status", "complete", timeout=120_000)
    thinking = answer.locator("details.thinking")
    body = answer.locator(".answer-body")
    expect(thinking).to_be_visible()
    expect(thinking).not_to_have_attribute("open", "")
    expect(thinking.locator(".thinking-body")).to_be_hidden()
    expect(body).to_have_text(ANSWER)
    expect(body.locator("p")).to_have_count(1)  # rendered as Markdown, not raw text
    shot = screenshot(page, "gptoss-chat")
    thinking.locator("summary").click()
    expect(thinking.locator(".thinking-body")).to_have_text(REASONING)
    shown = {"thinking": thinking.locator(".thinking-body").inner_text(), "answer": body.inner_text()}
    meta = answer.locator(".msg-meta").inner_text()
    # After a reload the stored answer looks the same: reasoning collapsed and apart.
    page.reload()
    again = page.locator(".msg-assistant").last
    expect(again.locator(".answer-body")).to_have_text(ANSWER)
    expect(again.locator("details.thinking")).not_to_have_attribute("open", "")
    expect(again.locator("details.thinking .thinking-body")).to_have_text(REASONING, use_inner_text=False)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "gptoss-page.txt").write_text(
        f"Thinking (collapsed, opened): {shown['thinking']}\nanswer: {shown['answer']}\n"
        f"footer: {meta}\nscreenshot: {shot}\n"
    )
    print(f"\nthe page shows: Thinking: {shown['thinking']!r}; answer: {shown['answer']!r}; {meta}")
    page.context.close()
