"""The WebSocket handshake's Origin must match a portal origin in scheme, host and port (issue 12, item 6).

A browser page on another origin (another site, the same host on another port or over
plain HTTP) could otherwise open a socket with the signed-in user's cookie. The rule is in
portal/origins.py and docs/websocket.md.
"""

from __future__ import annotations

import pytest

from tests.websocket import open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]

PUBLIC = "https://portal.example.com"
# What nginx sends Daphne in the shipped configuration: Host as the browser sent it, the scheme in a header.
BEHIND_NGINX = [(b"host", b"portal.example.com"), (b"x-forwarded-proto", b"https")]


async def opens(user, origin: bytes | None, headers=None) -> bool:
    communicator, connected, _ = await open_socket("/ws/status/", user, origin, headers=headers)
    await communicator.disconnect()
    return connected


async def test_the_pages_own_origin_opens_the_socket(alice):
    assert await opens(alice, b"http://localhost")
    assert await opens(alice, b"http://localhost:80"), "the default port written out is the same origin"
    assert await opens(alice, b"http://127.0.0.1:8000", headers=[(b"host", b"127.0.0.1:8000")])


@pytest.mark.parametrize(
    "origin",
    [
        b"https://localhost",  # another scheme
        b"http://localhost:8080",  # another port
        b"http://evil.example",  # another site
        b"http://localhost.evil.example",
        b"null",  # sandboxed frames and file: pages
        b"ws://localhost",
        b"not an origin",
    ],
)
async def test_another_origin_is_refused(alice, origin):
    assert not await opens(alice, origin)


async def test_a_handshake_without_an_origin_is_refused(alice):
    # Every browser sends one; a script that leaves it out can send the portal's own.
    assert not await opens(alice, None)


async def test_a_host_the_portal_does_not_answer_to_is_not_its_own_origin(alice):
    # DNS rebinding: evil.example resolves to the portal, so Host and Origin agree, and both are foreign.
    assert not await opens(alice, b"http://evil.example:8000", headers=[(b"host", b"evil.example:8000")])


async def test_behind_a_tls_proxy_the_public_origin_opens_and_plain_http_does_not(alice, settings):
    settings.ALLOWED_HOSTS = ["portal.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert await opens(alice, PUBLIC.encode(), headers=BEHIND_NGINX)
    assert not await opens(alice, b"http://portal.example.com", headers=BEHIND_NGINX)
    assert not await opens(alice, b"https://portal.example.com:8443", headers=BEHIND_NGINX)
    # Without the proxy's word that the request came over TLS, the request's own origin is http.
    assert not await opens(alice, PUBLIC.encode(), headers=[(b"host", b"portal.example.com")])


async def test_the_public_url_is_trusted_with_its_scheme_and_port(alice, settings):
    settings.PORTAL_PUBLIC_URL = "https://portal.example.com:8443/"
    internal = [(b"host", b"127.0.0.1:8001")]
    assert await opens(alice, b"https://portal.example.com:8443", headers=internal)
    assert not await opens(alice, b"https://portal.example.com", headers=internal)
    assert not await opens(alice, b"http://portal.example.com:8443", headers=internal)


async def test_csrf_trusted_origins_are_trusted_subdomain_wildcards_included(alice, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.org", "https://*.example.net"]
    internal = [(b"host", b"127.0.0.1:8001")]
    assert await opens(alice, b"https://chat.example.org", headers=internal)
    assert await opens(alice, b"https://team.example.net", headers=internal)
    assert not await opens(alice, b"https://example.net", headers=internal)
    assert not await opens(alice, b"http://team.example.net", headers=internal)
    assert not await opens(alice, b"https://team.example.net:444", headers=internal)
    assert not await opens(alice, b"https://chat.example.org.evil.example", headers=internal)
