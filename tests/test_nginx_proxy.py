"""The portal behind Debian's nginx running the shipped deploy/nginx.conf (tests/nginx_proxy.py).

Daphne runs as operators run it behind the proxy (``runportal`` with
``PORTAL_BEHIND_PROXY=true``, so ``--proxy-headers``) on the engine stack's database. The
clients connect to nginx from 127.0.0.3 or 127.0.0.4 while nginx reaches Daphne from
127.0.0.1, so the address the portal records shows whose word it took: nginx's (the right
one), Daphne's own peer (proxy headers not trusted) or the client's forged
``X-Forwarded-For`` (the proxy passed it on).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import openai
import pytest
from allauth.account import app_settings as allauth_settings
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.nginx_proxy import Nginx, require_nginx
from tests.stack import BASE_DIR, Stack, free_port, wait_for_web

pytestmark = pytest.mark.engine
require_nginx()

PASSWORD = "correct horse battery staple"
FORGED = "203.0.113.66"
# The addresses the test's clients connect from (all of 127.0.0.0/8 is loopback on Linux).
CLIENT = "127.0.0.3"
BRUTE_FORCER = "127.0.0.4"


@dataclass
class ProxiedPortal:
    stack: Stack
    nginx: Nginx

    def client(self, source: str, forged: str = FORGED) -> httpx.Client:
        """An HTTPS client of nginx from ``source`` that claims to be ``forged`` on every request."""
        transport = httpx.HTTPTransport(verify=self.nginx.ssl_context(), local_address=source)
        return httpx.Client(
            base_url=self.nginx.url,
            transport=transport,
            headers={"X-Forwarded-For": forged},
            timeout=120,
            trust_env=False,
        )

    def log_in(
        self, client: httpx.Client, username: str, password: str = PASSWORD, forged: str | None = None
    ) -> httpx.Response:
        """Post allauth's login form as a browser would (CSRF cookie and token, same origin)."""
        if "csrftoken" not in client.cookies:
            client.get("/accounts/login/").raise_for_status()
        headers = {"Origin": self.nginx.url, "Referer": f"{self.nginx.url}/accounts/login/"}
        if forged is not None:
            headers["X-Forwarded-For"] = forged
        return client.post(
            "/accounts/login/",
            data={"login": username, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers=headers,
        )

    def member(self) -> str:
        username = f"proxied{secrets.token_hex(3)}"
        self.stack.add_member(username, PASSWORD)
        return username

    def audit_ips(self, action: str, target: str) -> list[str]:
        rows = self.stack.query(
            "SELECT ip FROM audit_event WHERE action = ? AND target = ? ORDER BY seq", (action, target)
        )
        return [row[0] for row in rows]


@pytest.fixture(scope="module")
def proxied(stack_base: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedPortal]:
    web_port = free_port()
    nginx = Nginx(
        tmp_path_factory.mktemp("nginx"), upstream_port=web_port, https_port=free_port(), http_port=free_port()
    )
    env = {
        **stack_base.env,
        "PORTAL_BEHIND_PROXY": "true",
        "PORTAL_HOST": "127.0.0.1",
        "PORTAL_PORT": str(web_port),
        # The origin people open: nginx's (its `Host $host` drops the test's port).
        "PORTAL_PUBLIC_URL": nginx.url,
        "PORTAL_CSRF_TRUSTED_ORIGINS": nginx.url,
    }
    web = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--no-engine"],
        cwd=BASE_DIR,
        env=env,
        stdout=(stack_base.data_dir / f"runportal-{web_port}.out").open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_web(web, f"http://127.0.0.1:{web_port}", "the web process behind nginx (runportal)")
        nginx.start()
        yield ProxiedPortal(stack_base, nginx)
    finally:
        nginx.stop()
        web.terminate()  # runportal stops its Daphne
        try:
            web.wait(timeout=40)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()


def test_plain_http_is_sent_to_https(proxied: ProxiedPortal) -> None:
    response = httpx.get(f"http://127.0.0.1:{proxied.nginx.http_port}/chat/?x=1", trust_env=False)
    assert response.status_code == 301
    assert response.headers["location"] == "https://127.0.0.1/chat/?x=1"


def test_a_sign_in_is_recorded_from_the_clients_address_not_the_forged_one(proxied: ProxiedPortal) -> None:
    username = proxied.member()
    with proxied.client(CLIENT) as client:
        response = proxied.log_in(client, username)
    assert response.status_code == 302, response.text[:500]
    assert proxied.audit_ips("auth.login", username) == [CLIENT]


def test_claiming_a_new_address_for_each_try_does_not_escape_the_per_ip_login_limit(proxied: ProxiedPortal) -> None:
    # The posts leave the password out: no password is hashed, so all of them fit well inside
    # the limit's minute even on a busy machine (allauth counts every post of the form).
    per_minute = re.fullmatch(r"(\d+)/m/ip", allauth_settings.RATE_LIMITS["login"])
    assert per_minute, f"the test expects allauth's login limit per IP and minute, not {allauth_settings.RATE_LIMITS}"
    allowed = int(per_minute.group(1))
    statuses = []
    with proxied.client(BRUTE_FORCER) as client:
        for attempt in range(allowed + 1):
            response = proxied.log_in(client, "nobody", "", forged=f"198.51.{attempt // 250}.{attempt % 250 + 1}")
            statuses.append(response.status_code)
    assert statuses == [200] * allowed + [429]


def test_a_chat_answer_streams_over_the_websocket_through_nginx(proxied: ProxiedPortal, engine_stack: Stack) -> None:
    username = proxied.member()
    with proxied.client(CLIENT) as client:
        assert proxied.log_in(client, username).status_code == 302
        session = client.cookies["sessionid"]
    frames: list[dict[str, Any]] = []
    with connect(
        f"wss://127.0.0.1:{proxied.nginx.https_port}/ws/chat/",
        ssl=proxied.nginx.ssl_context(),
        origin=Origin(proxied.nginx.url),
        additional_headers={"Cookie": f"sessionid={session}", "X-Forwarded-For": FORGED},
        proxy=None,
        source_address=(CLIENT, 0),
    ) as socket:
        question = "What is the capital of France?"
        params = {"temperature": 0, "max_tokens": 40}
        socket.send(json.dumps({"type": "chat.send", "conversation": None, "content": question, "params": params}))
        while not frames or frames[-1]["type"] != "done":
            frames.append(json.loads(socket.recv(timeout=120)))
    done = frames[-1]
    text = "".join(frame["content"] for frame in frames if frame["type"] == "delta")
    assert done["status"] == "complete", done
    assert "Paris" in text
    stored = proxied.stack.query("SELECT content FROM chat_message WHERE id = ?", (done["answer"],))
    assert stored == [(text,)]


def test_a_v1_answer_streams_as_server_sent_events_through_nginx(proxied: ProxiedPortal, engine_stack: Stack) -> None:
    username = proxied.member()
    key = engine_stack.manage("apikey", "create", username, "--name", "proxied").stdout.strip()
    # The openai client is built on httpx2: the same client as ProxiedPortal.client, in its flavour.
    transport = httpx2.HTTPTransport(verify=proxied.nginx.ssl_context(), local_address=CLIENT)
    headers = {"X-Forwarded-For": FORGED}
    with openai.DefaultHttpxClient(transport=transport, headers=headers, timeout=120, trust_env=False) as http:
        api = openai.OpenAI(base_url=f"{proxied.nginx.url}/v1", api_key=key, max_retries=0, http_client=http)
        chunks = list(
            api.chat.completions.create(
                model=engine_stack.served_model,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=40,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "Paris" in text
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    usage = chunks[-1].usage
    assert usage is not None
    assert 0 < usage.completion_tokens <= 40
