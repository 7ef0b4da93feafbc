"""Two web processes sharing Redis: a page reloaded onto the other process picks the answer up.

The answer keeps running in the process that started it; the page on the second process
gets the text so far and the rest through Redis. The stub engine keeps the answer exact.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import (  # noqa: F401 - two fixtures
    WebPortal,
    browser_fixture,
    chromium_executable,
    log_in,
    redis_url_fixture,
)
from tests.chat_stub_engine import Script, StubEngine

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def two_portals(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[WebPortal, WebPortal, Any]]:
    chromium_executable()
    stub = StubEngine()
    data_dir = tmp_path_factory.mktemp("chat-two-processes")
    env = {"REDIS_URL": redis_url, "PORTAL_REDIS_PREFIX": f"chat-test-{secrets.token_hex(3)}"}
    first, second = WebPortal(data_dir, env), WebPortal(data_dir, env)
    try:
        first.start()
        second.start(migrate=False)
        first.manage("shell", "-c", f"from tests.chat_stub_engine import register; register({stub.url!r})")
        first.create_member("alice")
        yield first, second, stub
    finally:
        first.stop()
        second.stop()
        stub.close()


def test_a_reload_onto_another_web_process_continues_the_answer(browser: Any, two_portals: Any) -> None:
    first, second, stub = two_portals
    pieces = [("", f"w{index} ") for index in range(150)]
    stub.script = Script(pieces=pieces, delay=0.03)
    context = browser.new_context()
    page = context.new_page()
    log_in(page, first.url, "alice")
    page.fill("#prompt", "A long answer, please")
    page.press("#prompt", "Enter")
    expect(page.locator(".msg-assistant .answer-body").last).to_contain_text("w3", timeout=15_000)
    page.wait_for_url(f"{first.url}/chat/*/")
    path = page.url.removeprefix(first.url)
    # Same host, other port: the session cookie is shared, the socket goes to the other process.
    page.goto(f"{second.url}{path}")
    answer = page.locator(".msg-assistant").last
    expect(answer).to_have_attribute("data-status", "streaming", timeout=10_000)
    expect(answer.locator(".answer-body")).to_contain_text("w0", timeout=10_000)
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    assert answer.locator(".answer-body").inner_text().split() == [content.strip() for _, content in pieces]
    assert stub.finished.is_set()
    context.close()
