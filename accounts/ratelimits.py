"""Rate limits on the portal's own HTTP views, and the check that they are shared in production.

One middleware applies django-ratelimit to every page and JSON view of the portal: per user
when logged in, per IP address otherwise, ``PORTAL_HTTP_RATE_LIMIT`` requests (default
``300/m``) in a fixed window. Left out: allauth's views (login, sign-up, password reset keep
allauth's own limits), static files, the health probes of load balancers and Prometheus's
``/metrics`` scrapes.

Answers started through the chat socket or the API are limited by the user's policy
(``requests_per_minute``), which the ledger enforces under its row lock: that limit holds
across all web processes without the cache.

The counts live in the cache, so with several web processes the cache must be shared
(Redis): a per-process cache would let each process grant the full rate. The system check
below refuses a non-shared cache in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_ratelimit.core import get_usage

GROUP = "portal.http"
# Paths that keep their own limits (allauth) or must always answer (probes, scrapes, static files).
EXEMPT_PREFIXES = ("/accounts/", "/admin/login/", "/static/", "/healthz", "/readyz", "/metrics")
SHARED_CACHES = (
    "django.core.cache.backends.redis.RedisCache",
    "django.core.cache.backends.memcached.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache",
    "django_redis.cache.RedisCache",
)


def _key(group: str, request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


class RateLimitMiddleware:
    """Answer 429 with ``Retry-After`` when a user (or an anonymous IP) exceeds the HTTP rate."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(EXEMPT_PREFIXES):
            return self.get_response(request)
        usage = get_usage(request, group=GROUP, key=_key, rate=settings.HTTP_RATE_LIMIT, increment=True)
        if usage is None or not usage["should_limit"]:
            return self.get_response(request)
        return _refusal(request, usage)


def _refusal(request: HttpRequest, usage: dict[str, Any]) -> HttpResponse:
    retry_after = max(1, int(usage["time_left"]))
    message = f"Too many requests: at most {settings.HTTP_RATE_LIMIT}. Try again in {retry_after} s."
    response: HttpResponse
    if "application/json" in request.headers.get("Accept", "") or "/api/" in request.path:
        error = {"code": "rate_limited", "message": message, "retry_after": retry_after}
        response = JsonResponse({"error": error}, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


@register("accounts")
def check_shared_cache(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Production with several web processes needs a cache they share, or rate limits multiply.

    One declared web process (``PORTAL_WEB_PROCESSES``, default 1) shares its in-memory cache
    with itself; ``doctor`` also counts the Daphnes actually running.
    """
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if settings.PRODUCTION and settings.PORTAL_WEB_PROCESSES > 1 and backend not in SHARED_CACHES:
        return [
            Error(
                f"The cache ({backend}) is not shared between web processes, so rate limits would count per process.",
                hint="Set REDIS_URL (or PORTAL_CACHE_URL) when PORTAL_WEB_PROCESSES is above 1.",
                id="accounts.E001",
            )
        ]
    return []
