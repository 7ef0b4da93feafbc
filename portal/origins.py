"""Which page origins may open the portal's WebSockets: scheme, host and port, all three.

A browser sends the page's ``Origin`` with every WebSocket handshake and, unlike a fetch,
applies no same-origin rule of its own, so this check is what stops another site (or
another port or plain-HTTP page on the same host) from using a signed-in user's cookie.

Allowed, compared as ``scheme://host:port`` with the default port filled in:

- the origin of ``PORTAL_PUBLIC_URL``;
- ``CSRF_TRUSTED_ORIGINS`` (as Django reads them: ``https://*.example.com`` allows
  subdomains, with that scheme and port);
- the request's own origin, as Django's CSRF check sees it: the ``Host`` header, when it
  is one of ``ALLOWED_HOSTS``, with the scheme the request came in on (``wss``, or the
  proxy's ``SECURE_PROXY_SSL_HEADER``).

A handshake without an ``Origin`` (or with ``null``) is refused: every browser sends one,
so only non-browser clients lack it, and they can send the portal's origin.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """A web origin with every part explicit: ``https://Example.com`` is ``("https", "example.com", 443)``."""

    scheme: str
    host: str
    port: int


def parse_origin(value: str) -> Origin | None:
    """Return the origin of an http(s) URL (any path is ignored), or None when it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def _matches(origin: Origin, entry: str) -> bool:
    # Django's wildcard "https://*.example.com" allows any subdomain, with that scheme and port.
    wildcard = "://*." in entry
    pattern = parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
    if pattern is None or (origin.scheme, origin.port) != (pattern.scheme, pattern.port):
        return False
    return origin.host.endswith("." + pattern.host) if wildcard else origin.host == pattern.host


def trusted_origins() -> list[str]:
    """Return the configured origins: ``PORTAL_PUBLIC_URL``'s, then ``CSRF_TRUSTED_ORIGINS``."""
    public = [str(settings.PORTAL_PUBLIC_URL)] if settings.PORTAL_PUBLIC_URL else []
    return [*public, *settings.CSRF_TRUSTED_ORIGINS]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin1")
    return None


def _own_origin(scope: dict[str, Any]) -> Origin | None:
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    secure = scope.get("scheme") == "wss"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        # Django names it as a META key (HTTP_X_FORWARDED_PROTO); the scope has raw headers.
        name, value = proxy_header
        sent = _header(scope, name.removeprefix("HTTP_").replace("_", "-").lower().encode())
        secure = sent is not None and sent.split(",")[0].strip() == value
    return parse_origin(f"{'https' if secure else 'http'}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Return whether the handshake's ``Origin`` is one the portal answers to (see the module docstring)."""
    sent = _header(scope, b"origin")
    origin = parse_origin(sent) if sent else None
    if origin is None:
        return False
    return origin == _own_origin(scope) or any(_matches(origin, entry) for entry in trusted_origins())


class OriginValidator:
    """ASGI middleware: refuse a WebSocket handshake whose ``Origin`` is not allowed (HTTP 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("OriginValidator only guards WebSocket connections")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
