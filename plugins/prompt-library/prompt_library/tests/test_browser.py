"""Inserting a template into the chat composer, in headless Chromium against a real web process.

Uses the portal's browser harness (tests/browser.py) and its deterministic stub engine, which
records what it was sent: the filled-in template is what reaches the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import (  # noqa: F401 - browser_fixture is a fixture
    WebPortal,
    browser_fixture,
    chromium_executable,
    log_in,
    screenshot,
)
from tests.chat_stub_engine import StubEngine

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stub() -> Iterator[StubEngine]:
    engine = StubEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, stub: StubEngine) -> Iterator[WebPortal]:
    chromium_executable()
    web = WebPortal(tmp_path_factory.mktemp("prompt-library-browser"))
    web.start()
    web.manage("shell", "-c", f"from tests.chat_stub_engine import register; register({stub.url!r})")
    web.create_member("alice")
    web.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from prompt_library.models import PromptTemplate; "
        "PromptTemplate.objects.create(owner=get_user_model().objects.get(username='alice'), "
        "title='Translate', body='Translate {{text}} into {{language}}.')",
    )
    yield web
    web.stop()


def test_a_member_inserts_a_template_with_its_variables_filled_into_the_composer(
    browser: Any, portal: WebPortal, stub: StubEngine
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        log_in(page, portal.url, "alice")
        page.fill("#prompt", "Please: ")
        page.click("text=Insert template")
        dialog = page.locator("dialog.prompt-dialog")
        expect(dialog).to_be_visible()
        dialog.locator("button", has_text="Translate").click()
        dialog.get_by_label("text").fill("good morning")
        dialog.get_by_label("language").fill("Italian")
        expect(dialog.locator(".preview")).to_have_text("Translate good morning into Italian.")
        screenshot(page, "prompt-library-dialog")
        dialog.locator("button.insert-template").click()
        expect(dialog).to_have_count(0)
        expect(page.locator("#prompt")).to_have_value("Please: Translate good morning into Italian.")
        page.keyboard.press("Enter")
        expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "complete", timeout=15_000)
        assert stub.requests[-1]["messages"][-1]["content"] == "Please: Translate good morning into Italian."
        assert errors == []
    finally:
        context.close()
