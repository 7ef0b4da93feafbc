"""The current request's id, for audit events and log lines (a context variable per request)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

_request_id: ContextVar[str] = ContextVar("portal_request_id", default="")
# The request itself, so signal receivers (a role change, a deactivation) can name who did it.
_request: ContextVar[HttpRequest | None] = ContextVar("portal_request", default=None)
# A client's X-Request-ID is kept only when it looks like an id: it ends up in logs and events.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def current_request_id() -> str:
    """Return the id of the request being handled ("" outside a request)."""
    return _request_id.get()


def current_request() -> HttpRequest | None:
    """Return the HTTP request being handled in this context, if any."""
    return _request.get()


def set_request_id(value: str) -> None:
    """Set the current request id (for work outside HTTP, e.g. a WebSocket message)."""
    _request_id.set(value)


class RequestIdMiddleware:
    """Give every request an id (the client's ``X-Request-ID`` if well-formed) and echo it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get("X-Request-ID", "")
        request_id = offered if _ACCEPTED.match(offered) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        request_token = _request.set(request)
        try:
            response = self.get_response(request)
        finally:
            _request.reset(request_token)
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response
