"""Quotas as a member sees them in Chromium: the refusal with its reset time, and the Usage page.

A real web process (its own SQLite data directory) with the stub engine, the Members group
given 100 tokens a day by ``manage.py quota``-like shell set-up; the stub bills 11 prompt
tokens and one token per piece, so the numbers are exact.
"""

from __future__ import annotations

import re
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
from tests.chat_stub_engine import Script, StubEngine

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebPortal, StubEngine]]:
    chromium_executable()
    stub = StubEngine()
    stub.script = Script(pieces=[("", "word ")] * 80)
    web = WebPortal(tmp_path_factory.mktemp("quota-browser"))
    try:
        web.start()
        web.manage("shell", "-c", f"from tests.chat_stub_engine import register; register({stub.url!r})")
        web.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import Group; from accounts.models import GroupPolicy, Policy; "
            "p = Policy.objects.create(name='members', tokens_per_day=100, concurrent_answers=1); "
            "GroupPolicy.objects.create(group=Group.objects.get(name='Members'), policy=p)",
        )
        web.create_member("alice")
        yield web, stub
    finally:
        web.stop()
        stub.close()


def test_a_member_who_used_up_the_budget_is_told_when_it_resets(browser: Any, portal: Any) -> None:
    web, _ = portal
    page = browser.new_context().new_page()
    log_in(page, web.url, "alice")
    page.fill("#prompt", "Tell me a story")
    page.press("#prompt", "Enter")
    answer = page.locator(".msg-assistant").last
    # 11 prompt tokens + 80 pieces = 91 of the 100 tokens.
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    page.fill("#prompt", "And another one")
    page.press("#prompt", "Enter")
    notice = page.locator("#notice")
    expect(notice).to_be_visible(timeout=15_000)
    expect(notice).to_have_text(
        re.compile(r"^Your daily budget of 100 tokens is used up; it resets at 00:00 \(in (\d+ h )?\d+ (min|s)\)\.$")
    )
    # Nothing was saved: the question is back in the composer.
    expect(page.locator("#prompt")).to_have_value("And another one")
    screenshot(page, "quota-refused")
    page.goto(f"{web.url}/usage/")
    expect(page.locator("#usage-today")).to_contain_text("91 tokens of 100")
    expect(page.locator("#usage-chart")).to_be_visible()
    # Chart.js drew on the canvas: it sized it and painted something.
    painted = page.evaluate(
        "() => { const c = document.getElementById('usage-chart');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " return c.width > 0 && d.some((v, i) => i % 4 === 3 && v > 0); }"
    )
    assert painted
    screenshot(page, "quota-usage-page")
    page.context.close()
