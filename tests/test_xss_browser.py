"""An XSS corpus (tests/data/xss_payloads.json) against every place the portal shows hostile text.

As model output, through the deterministic stub engine (tests/chat_stub_engine.py, a stub on
purpose: the point is what the page does with an answer, not what a model writes), streamed
live and reloaded from history; and as user input: questions typed into the chat box,
conversation titles, a system prompt, the filter box, prompt-library templates, API key
names and an admin's reason for reading a conversation, on the pages of their owner, of a
second member and of an admin. Each page runs in headless Chromium with a trap installed
before any of its scripts (``window.__xssHit``, ``alert``), a 'dialog' listener, a
``securitypolicyviolation`` listener and a route that records (and answers 204 to) every
request that leaves the portal's origin.

The controls prove the trap works: the same corpus in a naive renderer (``innerHTML =
marked.parse(text)``, no sanitizer, no CSP) fires exactly the payloads marked ``naive_fires``,
and the same payloads injected unsanitized into the real chat page are stopped by its CSP,
which the violation listener hears.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser import (  # noqa: F401 - browser_fixture is a fixture
    PASSWORD,
    WebPortal,
    browser_fixture,
    chromium_executable,
    log_in,
)
from tests.chat_stub_engine import Script, StubEngine

pytestmark = pytest.mark.browser

CORPUS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "data" / "xss_payloads.json").read_text())[
    "payloads"
]
BATCH = 10
ID_IN_URL = r"/%s(?![\w-])"  # a payload's id as a path segment of the address it loads
BATCHES = [CORPUS[start : start + BATCH] for start in range(0, len(CORPUS), BATCH)]

# Installed before any script of every page and frame: whatever a payload manages to run
# reports to the test through the exposed binding, which survives navigations and frames.
TRAP = """
(() => {
  const report = (kind, detail) => { try { window.__xssReport(kind, String(detail)); } catch (e) {} };
  window.__xssHit = (id) => report("hit", id);
  for (const name of ["alert", "confirm", "prompt"]) { window[name] = (message) => report(name, message); }
  document.addEventListener("securitypolicyviolation",
    (event) => report("csp", `${event.violatedDirective} ${event.blockedURI}`), true);
})();
"""

# Provoke every handler a payload could hang on the elements under ``selector``: pointer,
# focus and key events on each element; a click on every element that is not a button nor
# inside a link to an http(s)/mailto address (those only navigate; a link to anything else is
# clicked, which runs a javascript: one); a submit of every form that points away from the
# portal. Then let the event loop run the tasks these queued (two frames and a macrotask).
PROVOKE = """
async (selector) => {
  const events = ["mouseover", "mouseenter", "mousemove", "mousedown", "mouseup", "pointerover",
    "pointerenter", "focus", "focusin", "keydown", "input", "dblclick", "contextmenu"];
  const linkOf = (node) => node.getAttribute("href") ?? node.getAttribute("xlink:href");
  // Each element once, however many of the selector's roots hold it.
  const roots = [...document.querySelectorAll(selector)];
  const nodes = new Set(roots.flatMap((root) => [...root.querySelectorAll("*")]));
  const forms = [...nodes].filter((node) => node.tagName.toLowerCase() === "form");
  for (const node of nodes) {
    for (const type of events) { node.dispatchEvent(new MouseEvent(type, { bubbles: true, cancelable: true })); }
    if (node.closest("button") || node.matches("input[type=submit], input[type=image]")) { continue; }
    const link = node.closest("a");
    const href = link === null ? null : linkOf(link);
    if (href !== null && /^(https?|mailto):$/.test(new URL(href, document.baseURI).protocol)) { continue; }
    node.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true }));
    // A javascript: address runs in a task of its own, which a later navigation would cancel.
    if (href !== null) { await new Promise((done) => setTimeout(done, 0)); }
  }
  for (const form of forms) {
    if (new URL(form.action, document.baseURI).origin !== location.origin) { form.requestSubmit(); }
  }
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 0))));
}
"""

# What must not be under ``selector`` once hostile text is shown: event-handler attributes,
# elements that run or load something, links to other schemes, same-site-looking links that
# lead elsewhere, new-tab links without noopener, and a <base> anywhere in the document.
INSPECT = """
(selector) => {
  const problems = [];
  const describe = (node) => node.outerHTML.slice(0, 160);
  if (document.querySelector("base")) { problems.push("a <base> element"); }
  // A json_script block is data (its "<" escaped), the one script a page may hold.
  const loaders = ["script:not([type='application/json'])", "iframe, frame, object, embed, base, meta, link",
    "style, math, noscript"].join(", ");
  // The portal's own pages show its own icons; nothing else is loaded.
  const media = "img, image, video, audio, source, track, input[type=image]";
  const sources = ["src", "srcset", "poster", "href", "xlink:href"];
  for (const root of document.querySelectorAll(selector)) {
    for (const node of root.querySelectorAll("*")) {
      for (const attribute of node.attributes) {
        if (attribute.name.startsWith("on") || attribute.name === "srcdoc" || attribute.name === "style") {
          problems.push(`attribute ${attribute.name}: ${describe(node)}`);
        }
      }
      if (node.matches(loaders)) { problems.push(`element: ${describe(node)}`); }
      if (node.matches(media) && sources.some((name) => node.hasAttribute(name)
          && new URL(node.getAttribute(name), document.baseURI).origin !== location.origin)) {
        problems.push(`media from elsewhere: ${describe(node)}`);
      }
      if (node.tagName.toLowerCase() === "form" && new URL(node.action, document.baseURI).origin !== location.origin) {
        problems.push(`form to another site: ${describe(node)}`);
      }
      const href = node.getAttribute("href") ?? node.getAttribute("xlink:href");
      if (href === null) { continue; }
      const url = new URL(href, document.baseURI);
      if (!["http:", "https:", "mailto:"].includes(url.protocol)) { problems.push(`link scheme: ${describe(node)}`); }
      if (!/^(https?|mailto):/i.test(href.trim()) && url.origin !== location.origin) {
        problems.push(`relative link to another site: ${describe(node)}`);
      }
      if (node.target === "_blank" && !/\\bnoopener\\b/.test(node.rel) && !/\\bnoreferrer\\b/.test(node.rel)) {
        problems.push(`new tab without noopener: ${describe(node)}`);
      }
    }
  }
  return problems;
}
"""


def batch_text(batch: list[dict[str, Any]]) -> str:
    return "\n\n".join(item["payload"] for item in batch)


def pieces(text: str, size: int = 9) -> list[str]:
    """Cut text into small pieces, so the page renders many prefixes of it while it streams."""
    return [text[start : start + size] for start in range(0, len(text), size)]


def wait_until(page: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the page run until ``condition`` holds (the binding's reports arrive while it runs)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        page.wait_for_timeout(50)


class Watch:
    """Every signal that hostile text ran or reached out, for one browser context."""

    def __init__(self, context: Any, origin: str) -> None:
        self.origin = origin
        self.reports: list[tuple[str, str]] = []
        self.dialogs: list[str] = []
        self.outside: list[str] = []
        self.console_csp: list[str] = []
        self.page_errors: list[str] = []
        context.expose_binding("__xssReport", lambda source, kind, detail: self.reports.append((kind, detail)))
        context.add_init_script(TRAP)
        context.route("**/*", self._route)
        context.on("page", self._watch_page)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if (
            url.startswith(("data:", "blob:", "about:"))
            or urlsplit(url)._replace(path="", query="", fragment="")[:2] == urlsplit(self.origin)[:2]
        ):
            route.continue_()
            return
        self.outside.append(url)
        # 204 keeps a navigation on the page it started from (a failed one would not).
        route.fulfill(status=204, body="")

    def _watch_page(self, page: Any) -> None:
        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                self.console_csp.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.on(
            "websocket",
            lambda socket: (
                None if socket.url.startswith(self.origin.replace("http", "ws", 1)) else self.outside.append(socket.url)
            ),
        )

    def hits(self) -> set[str]:
        return {detail for kind, detail in self.reports if kind != "csp"}

    def violations(self) -> list[str]:
        return [detail for kind, detail in self.reports if kind == "csp"] + self.console_csp

    def fired(self) -> set[str]:
        """The payload ids that ran code or whose address was requested."""
        requested = {item["id"] for item in CORPUS for url in self.outside if re.search(ID_IN_URL % item["id"], url)}
        return self.hits() | requested

    def assert_quiet(self, page: Any, selector: str) -> None:
        """Provoke the elements under ``selector`` and check that nothing ran, loaded or leaked."""
        page.evaluate(PROVOKE, selector)
        assert page.evaluate(INSPECT, selector) == []
        assert self.hits() == set()
        assert self.dialogs == []
        assert self.violations() == []
        assert self.outside == []
        assert self.page_errors == []


@pytest.fixture(scope="module")
def stub() -> Iterator[StubEngine]:
    engine = StubEngine()
    yield engine
    engine.close()


# One shell for everything the tests need in the database (each manage.py run costs seconds):
# the schema, the stub engine, the personas, and for each payload a conversation of Alice's
# (title, system prompt, question, answer and reasoning), a shared prompt template and an
# API key name.
SEED = """
import json
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
from django.contrib.auth import get_user_model
from accounts.api_keys import create_key
from accounts.roles import assign_role, ADMINS, MEMBERS
from chat.models import Conversation, Message
from prompt_library.models import PromptTemplate
from tests.chat_stub_engine import register
register({stub_url!r})
User = get_user_model()
for name in ["alice", "bob"]:
    assign_role(User.objects.create_user(name, name + "@example.com", {password!r}), MEMBERS)
assign_role(User.objects.create_user("root", "root@example.com", {password!r}, is_staff=True), ADMINS)
alice = User.objects.get(username="alice")
for item in json.load(open("tests/data/xss_payloads.json"))["payloads"]:
    text = item["payload"]
    conversation = Conversation.objects.create(owner=alice, title=text[:200], system_prompt=text)
    Message.objects.create(conversation=conversation, role="user", content=text)
    Message.objects.create(conversation=conversation, role="assistant", content=text, reasoning=text)
    PromptTemplate.objects.create(owner=alice, title=text[:200], body=text + " {{{{value}}}}")
    create_key(alice, text[:100])
"""


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, stub: StubEngine) -> Iterator[WebPortal]:
    chromium_executable()  # skip (or fail in CI) before starting a web process for nothing
    web = WebPortal(tmp_path_factory.mktemp("xss-browser"))
    web.manage("shell", "-c", SEED.format(stub_url=stub.url, password=PASSWORD))
    web.start(migrate=False)
    yield web
    web.stop()


@pytest.fixture
def context(browser: Any, portal: WebPortal) -> Iterator[Any]:
    opened = browser.new_context(viewport={"width": 1200, "height": 800})
    yield opened
    opened.close()


def test_the_trap_fires_on_exactly_the_payloads_a_naive_renderer_lets_through(context: Any, portal: WebPortal) -> None:
    watch = Watch(context, portal.url)
    # A page on the portal's origin that the route answers itself, without the portal's CSP:
    # what a chat UI that trusts its Markdown library would do.
    control_url = f"{portal.url}/xss-naive-control/"
    marked = f"{portal.url}/static/vendor/marked/lib/marked.umd.js"
    html = f'<!doctype html><html><head><script src="{marked}"></script></head><body><main></main></body></html>'
    context.route(control_url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page = context.new_page()
    page.goto(control_url)
    page.evaluate(
        """(texts) => { for (const text of texts) {
             const div = document.createElement("div"); div.innerHTML = marked.parse(text);
             document.querySelector("main").appendChild(div); } }""",
        [item["payload"] for item in CORPUS],
    )
    page.evaluate(PROVOKE, "main")
    expected = {item["id"] for item in CORPUS if item["naive_fires"]}
    wait_until(page, lambda: watch.fired() >= expected)
    assert watch.fired() == expected
    assert ("alert", "alert-onerror") in watch.reports
    assert any(url.startswith("https://attacker.example/md-image-exfiltration?q=SECRET") for url in watch.outside)
    assert page.evaluate(INSPECT, "main") != []


def test_the_csp_stops_unsanitized_payloads_on_the_chat_page_and_the_listener_hears_it(
    context: Any, portal: WebPortal
) -> None:
    watch = Watch(context, portal.url)
    page = context.new_page()
    log_in(page, portal.url, "alice")
    # Bypass the renderer on purpose: raw HTML straight into the thread.
    page.evaluate(
        """(texts) => { for (const text of texts) {
             const div = document.createElement("div"); div.className = "control"; div.innerHTML = text;
             document.getElementById("thread").appendChild(div); } }""",
        [item["payload"] for item in CORPUS],
    )
    page.evaluate(PROVOKE, "#thread .control")
    wait_until(page, lambda: bool(watch.violations()) and bool(watch.outside))
    assert watch.hits() == set()
    # A CSP does not govern navigation: a meta refresh is the one payload that still leaves,
    # which is why the renderer never lets raw HTML through in the first place.
    assert watch.outside == ["https://attacker.example/meta-refresh?q=SECRET"]


def send(page: Any, text: str, answers: int) -> None:
    """Type ``text`` into the chat box, send it, and wait until ``answers`` answers are complete."""
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    expect(page.locator('.msg-assistant[data-status="complete"]')).to_have_count(answers, timeout=30_000)


THREAD = "#thread .markdown, #thread .user-text, #chat-title, #conversation-list"


def test_hostile_answers_execute_nothing_and_load_nothing_live_reloaded_and_for_staff(
    context: Any, portal: WebPortal, stub: StubEngine
) -> None:
    watch = Watch(context, portal.url)
    page = context.new_page()
    log_in(page, portal.url, "alice")
    for number, batch in enumerate(BATCHES, start=1):
        text = batch_text(batch)
        # The same payloads as reasoning and as the answer, streamed in small pieces.
        stub.script = Script(
            pieces=[*((piece, "") for piece in pieces(text)), *(("", piece) for piece in pieces(text))]
        )
        send(page, f"Show me batch {number}", number)
        watch.assert_quiet(page, THREAD)
    # Images are never shown in answers (remote ones would leak: markdown-image exfiltration).
    assert page.locator("#thread .markdown img").count() == 0
    assert page.locator("#thread a.image-link", has_text="(attacker.example)").count() >= 1
    # Every answer kept its text, shown as text where it is HTML.
    assert "<script>__xssHit('script-tag')</script>" in page.locator(".msg-assistant .answer-body").first.inner_text()
    page.wait_for_url(f"{portal.url}/chat/*/")
    conversation_url = page.url
    page.reload()
    expect(page.locator('.msg-assistant[data-status="complete"]')).to_have_count(len(BATCHES))
    page.locator(".msg-assistant .thinking summary").first.click()
    watch.assert_quiet(page, THREAD)

    admin = context.browser.new_context()
    admin_watch = Watch(admin, portal.url)
    staff = admin.new_page()
    log_in(staff, portal.url, "root", "/")
    staff.goto(conversation_url.replace("/chat/", "/chat/staff/"))
    # The reason is shown to auditors: a payload too.
    staff.fill("#reason", f"Checking a report: {CORPUS[3]['payload']}")
    staff.get_by_role("button", name="Record the reason and show the conversation").click()
    expect(staff.locator("article.card")).to_have_count(2 * len(BATCHES))
    admin_watch.assert_quiet(staff, "main")
    admin.close()


def test_hostile_questions_and_titles_execute_nothing_and_are_shown_as_typed(
    context: Any, portal: WebPortal, stub: StubEngine
) -> None:
    watch = Watch(context, portal.url)
    page = context.new_page()
    log_in(page, portal.url, "bob")
    stub.script = Script(pieces=[("", "Noted.")])
    for number, batch in enumerate(BATCHES, start=1):
        text = batch_text(batch)
        send(page, text, number)
        assert page.locator(".msg-user .user-text").nth(number - 1).text_content() == text
        watch.assert_quiet(page, THREAD)
    # The title is the first line of the first question, as text.
    first_line = CORPUS[0]["payload"].splitlines()[0]
    expect(page.locator("#chat-title")).to_have_text(first_line)
    # Renamed in place to each kind of payload, through the sidebar.
    for item in CORPUS[:: len(CORPUS) // 6]:
        title = " ".join(item["payload"].split())[:200]
        page.locator(".conversation-item").first.get_by_role("button", name="Rename").click()
        page.fill(".rename-input", title)
        page.press(".rename-input", "Enter")
        expect(page.locator(".conversation-item .conversation-title").first).to_have_text(title)
        watch.assert_quiet(page, THREAD)
    page.fill("#filter", CORPUS[3]["payload"])
    watch.assert_quiet(page, THREAD)


def test_hostile_titles_prompts_templates_and_key_names_execute_nothing_on_any_page(
    context: Any, portal: WebPortal
) -> None:
    """Alice's stored texts (one of each per payload) on her pages, Bob's and an admin's."""
    watch = Watch(context, portal.url)
    page = context.new_page()
    log_in(page, portal.url, "alice")
    for path in ["/", "/chat/", "/plugins/prompt-library/", "/account/keys/"]:
        page.goto(f"{portal.url}{path}")
        watch.assert_quiet(page, "main")
    # A conversation whose title and system prompt are a payload, and its history.
    page.goto(f"{portal.url}/chat/")
    page.locator(".conversation-item .conversation-title").nth(5).click()
    expect(page.locator('.msg-assistant[data-status="complete"]')).to_have_count(1)
    page.click("#toggle-settings")
    watch.assert_quiet(page, THREAD)
    # A key name typed into the form.
    page.goto(f"{portal.url}/account/keys/")
    page.fill("input[name=name]", CORPUS[3]["payload"][:100])
    page.click("form >> text=Create key")
    expect(page.locator("#new-key")).to_be_visible()
    watch.assert_quiet(page, "main")
    # The prompt library's dialog in the chat composer: the titles, then one template's form.
    page.goto(f"{portal.url}/chat/")
    page.click("text=Insert template")
    dialog = page.locator("dialog.prompt-dialog")
    watch.assert_quiet(page, "dialog.prompt-dialog")
    dialog.locator("button[data-template]").nth(3).click()
    dialog.get_by_label("value").fill(CORPUS[4]["payload"])
    watch.assert_quiet(page, "dialog.prompt-dialog")

    for username, paths in [
        ("bob", ["/plugins/prompt-library/"]),
        ("root", ["/admin/accounts/apikey/", "/admin/chat/conversationrecord/", "/audit/"]),
    ]:
        other = context.browser.new_context()
        other_watch = Watch(other, portal.url)
        other_page = other.new_page()
        log_in(other_page, portal.url, username, "/")
        for path in paths:
            other_page.goto(f"{portal.url}{path}")
            other_watch.assert_quiet(other_page, "main, #content")
        other.close()
