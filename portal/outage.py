"""A part the portal depends on is down: tell the exceptions apart and answer with a clean 503.

When the database or Redis (the cache, the channel layer) does not answer, every request that
needs it fails with the driver's connection error, from wherever it first touched the part:
a view, the session loaded by ``LoginRequiredMiddleware``, the rate limits in the cache.
Django turns any exception left over into its 500 handler, so that handler
(:func:`portal.views.server_error`) asks :func:`outage_of` whether the exception is an
outage, and answers 503 with a ``Retry-After`` instead of "something went wrong": a page for
people, OpenAI's error shape under ``/v1/``. A transaction cut by the outage rolls back, so
nothing was half-written; the next request after the part is back is served as usual.
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

DATABASE = "database"
REDIS = "redis"
RETRY_AFTER_SECONDS = 10
# The connection-level errors of the database and of Redis (redis-py's do not derive from the
# built-in ConnectionError). Integrity and data errors are bugs or bad input, not outages.
DATABASE_ERRORS = (OperationalError, InterfaceError)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
OUTAGE_ERRORS = (*DATABASE_ERRORS, *REDIS_ERRORS)
_MESSAGES = {
    DATABASE: "the portal's database is not answering; try again in a moment",
    REDIS: "the portal's Redis (cache and live updates) is not answering; try again in a moment",
}


def outage_of(exc: BaseException | None) -> str | None:
    """Return which part is down (:data:`DATABASE` or :data:`REDIS`) if ``exc`` says so, else None.

    Looks through the exception's causes too: a library may wrap the driver's error.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DATABASE_ERRORS):
            return DATABASE
        if isinstance(exc, REDIS_ERRORS):
            return REDIS
        exc = exc.__cause__ or exc.__context__
    return None


def message_for(part: str) -> str:
    """The sentence clients are shown for an outage of ``part``."""
    return _MESSAGES[part]


def unavailable_response(request: HttpRequest, part: str) -> HttpResponse:
    """Answer 503 for an outage of ``part``: JSON in OpenAI's shape under /v1/, else a plain page.

    Rendered without a request context: the context processors would read the user, whose
    session lives in the database that may be the part that is down.
    """
    response: HttpResponse
    if request.path.startswith("/v1/"):
        error = {"message": message_for(part), "type": "service_unavailable_error", "param": None,
                 "code": f"{part}_unavailable"}  # fmt: skip
        response = JsonResponse({"error": error}, status=503)
    else:
        page = loader.get_template("503.html").render({"message": message_for(part)})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
