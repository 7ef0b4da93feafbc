"""The chat page in headless Chromium against a real web process and the deterministic stub.

The stub makes the answers exact, so these tests can check what the page does with them:
streaming, stop, reload and re-attach, history, and that hostile answers execute nothing.
The real engine's answer in the browser is in tests/test_chat_engine.py.
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
from tests.chat_stub_engine import Script, StubEngine

pytestmark = pytest.mark.browser

# Every way an answer could try to run code, load something or smuggle markup, in both the
# answer and the reasoning. window.__xss is set by any payload that runs.
PAYLOADS = [
    "Here is some code:\n\n```python\nprint('safe')\n```\n\n",
    "<script>window.__xss = 'script'</script>\n\n",
    "<img src=x onerror=\"window.__xss = 'img'\">\n\n",
    "[click me](javascript:window.__xss='js-link')\n\n",
    "[data link](data:text/html,<script>window.__xss='data'</script>)\n\n",
    "![tracker](http://external.invalid/pixel.png)\n\n",
    '<div onmouseover="window.__xss = \'hover\'" id="hover-me">hover me</div>\n\n',
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>\n\n",
    '<a href="javascript:window.__xss=\'raw-a\'" id="raw-link">raw link</a>\n\n',
    '<svg onload="window.__xss = \'svg\'"><circle r="5"/></svg>\n\n',
    "<style>body { display: none }</style>\n\n",
    "[entity](jav&#x61;script:window.__xss='entity')\n\n",
    '<form action="https://external.invalid/"><button>go</button></form>\n\n',
    "Done: **bold** and a [fine link](https://example.org/page).",
]
REASONING = ["<img src=y onerror=\"window.__xss = 'reasoning'\">", " <script>window.__xss='r2'</script> thinking"]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubEngine]:
    engine = StubEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, stub: StubEngine) -> Iterator[WebPortal]:
    chromium_executable()  # skip (or fail in CI) before starting a web process for nothing
    web = WebPortal(tmp_path_factory.mktemp("chat-browser"), env={"PORTAL_CHAT_GRACE_SECONDS": "20"})
    web.start()
    web.manage("shell", "-c", f"from tests.chat_stub_engine import register; register({stub.url!r})")
    web.create_member("alice")
    yield web
    web.stop()


@pytest.fixture
def page(browser: Any, portal: WebPortal) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    opened = context.new_page()
    yield opened
    context.close()


def answer_text(page: Any) -> str:
    return str(page.locator(".msg-assistant .answer-body").last.inner_text())


def test_hostile_answers_execute_nothing_and_load_nothing(page: Any, portal: WebPortal, stub: StubEngine) -> None:
    stub.script = Script(pieces=[*[(piece, "") for piece in REASONING], *[("", piece) for piece in PAYLOADS]])
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    log_in(page, portal.url, "alice")
    # Count CSP violations: a payload that got through the sanitizer would trigger one.
    page.evaluate(
        "window.__violations = []; document.addEventListener('securitypolicyviolation',"
        " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI))"
    )
    page.fill("#prompt", "Show me everything")
    page.press("#prompt", "Enter")
    page.wait_for_selector('.msg-assistant[data-status="complete"]', timeout=30_000)
    page.hover(".msg-assistant .answer-body")
    page.locator(".msg-assistant .thinking summary").click()
    thread = page.locator("#thread")
    assert "Done: bold and a fine link." in answer_text(page)
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    assert page.evaluate("window.__violations") == []
    for selector in ["script", "img", "iframe", "svg", "style", "form", "object", "embed", "#hover-me"]:
        assert thread.locator(selector).count() == 0, selector
    handlers = page.evaluate(
        "[...document.querySelectorAll('#thread *')].flatMap(n => [...n.attributes].map(a => a.name))"
        ".filter(name => name.startsWith('on') || name === 'style' || name === 'src')"
    )
    assert handlers == []
    hrefs = page.evaluate("[...document.querySelectorAll('#thread a')].map(a => a.getAttribute('href'))")
    assert hrefs == ["http://external.invalid/pixel.png", "https://example.org/page"]
    # Raw HTML is shown as text, so the reader sees what the model wrote.
    assert "<script>window.__xss = 'script'</script>" in answer_text(page)
    assert thread.locator(".hljs").count() >= 1
    assert [url for url in requests if not url.startswith(portal.url)] == []
    screenshot(page, "chat-xss")


def test_tokens_arrive_stop_keeps_the_partial_answer(page: Any, portal: WebPortal, stub: StubEngine) -> None:
    stub.script = Script(pieces=[("", f"tok{index} ") for index in range(300)], delay=0.03)
    log_in(page, portal.url, "alice")
    page.fill("#prompt", "Count for me")
    page.click("#send")
    answer = page.locator(".msg-assistant .answer-body").last
    expect(answer).to_contain_text("tok3", timeout=15_000)
    # Tokens keep arriving while we watch.
    expect(answer).to_contain_text("tok12", timeout=15_000)
    page.click("#stop")
    page.wait_for_selector('.msg-assistant[data-status="stopped"]', timeout=15_000)
    stopped = answer_text(page)
    assert stopped.startswith("tok0 tok1")
    assert "tok299" not in stopped
    assert page.is_visible("#send")
    # The engine sent no usage for a stopped answer: counted, and said so, live and reloaded.
    meta = page.locator(".msg-assistant .msg-meta").last.inner_text()
    assert "tokens (estimated)" in meta
    page.reload()
    page.wait_for_selector('.msg-assistant[data-status="stopped"]')
    assert answer_text(page) == stopped
    assert page.locator(".msg-assistant .msg-meta").last.inner_text() == meta


def test_a_reload_during_an_answer_continues_it_and_history_survives(
    page: Any, portal: WebPortal, stub: StubEngine
) -> None:
    pieces = [("", f"w{index} ") for index in range(120)]
    stub.script = Script(pieces=[("Let me think.", ""), *pieces], delay=0.03)
    log_in(page, portal.url, "alice")
    page.fill("#prompt", "Tell me a long story")
    page.press("#prompt", "Enter")
    expect(page.locator(".msg-assistant .answer-body").last).to_contain_text("w5", timeout=15_000)
    page.wait_for_url(f"{portal.url}/chat/*/")
    conversation_url = page.url
    page.reload()
    assert page.url == conversation_url
    # The text written so far comes back at once, and the answer goes on to its end.
    expect(page.locator(".msg-assistant .answer-body").last).to_contain_text("w0", timeout=15_000)
    page.wait_for_selector('.msg-assistant[data-status="complete"]', timeout=30_000)
    assert answer_text(page).split() == [content.strip() for _, content in pieces]
    assert "Let me think." in page.locator(".msg-assistant .thinking-body").text_content()
    assert page.locator(".msg-assistant .msg-meta").inner_text().startswith("121 tokens")
    page.goto(f"{portal.url}/chat/")
    page.click(".conversation-item >> text=Tell me a long story")
    page.wait_for_selector('.msg-assistant[data-status="complete"]')
    assert page.locator(".msg-user .user-text").inner_text() == "Tell me a long story"
    assert answer_text(page).split()[-1] == "w119"


def test_the_engine_badge_follows_what_the_status_socket_pushes(page: Any, portal: WebPortal) -> None:
    def set_state(state: str, progress: float | None) -> None:
        portal.manage(
            "shell",
            "-c",
            "from inference.models import EngineState; "
            f"EngineState.objects.filter(engine__name='stub').update(state={state!r}, progress={progress!r})",
        )

    log_in(page, portal.url, "alice")
    badge = page.locator("#engine-status")
    expect(badge).to_have_text("stub-model: ready", timeout=15_000)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        set_state("loading", 0.4)
        expect(badge).to_have_text("stub-model: model loading 40%", timeout=15_000)
        expect(page.locator("#set-model option[value='stub-model']")).to_have_text("stub-model — model loading 40%")
    finally:
        set_state("ready", None)
    expect(badge).to_have_text("stub-model: ready", timeout=15_000)
    # The push carried the new state: the page fetched nothing for it.
    assert requests == []


def test_a_question_sent_while_the_socket_is_still_opening_goes_out_once_it_opens(
    page: Any, portal: WebPortal, stub: StubEngine
) -> None:
    stub.script = Script(pieces=[("", "early "), ("", "bird")])
    log_in(page, portal.url, "alice")
    # Slow every connection down (Chromium's own network emulation, which delays the
    # WebSocket handshake too), so the question is typed while the page's socket is opening.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    opened: list[str] = []
    page.on("websocket", lambda socket: opened.append(socket.url))
    page.reload(wait_until="domcontentloaded")
    page.fill("#prompt", "Who answers first?")
    page.press("#prompt", "Enter")
    assert not page.is_visible("#notice"), page.inner_text("#notice")
    page.wait_for_selector('.msg-assistant[data-status="complete"]', timeout=30_000)
    assert answer_text(page) == "early bird"
    assert any(url.endswith("/ws/chat/") for url in opened)
