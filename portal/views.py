"""Core pages: home, health, readiness and metrics."""

from __future__ import annotations

import sys

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import server_error as django_server_error

from portal import dashboard, health, metrics, outage
from portal.access import has_role
from portal.metrics_access import metrics_access


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The home page: a dashboard of the apps' and plugins' widgets the user may see."""
    return render(request, "portal/home.html", {"widgets": dashboard.render_widgets(request)})


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Alive: the process answers. Says nothing else, so it is safe to leave open."""
    return HttpResponse("ok\n", content_type="text/plain")


@login_not_required
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: database, channel layer, cache and engines answer; 503 when one does not.

    Error texts can name hosts and users, so only admins see them; others get the flags.
    """
    ready, report = health.readiness()
    checks = report if _is_admin(request) else health.summary(report)
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)


def _is_admin(request: HttpRequest) -> bool:
    try:
        return has_role(request.user, "admin")
    except outage.OUTAGE_ERRORS:
        # The session and the roles live in the database: with it down, nobody is an admin
        # here (and asking must not turn the readiness answer into an error page).
        return False


@login_not_required
@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for the metrics token (``Authorization: Bearer``) or a staff session."""
    refusal = metrics_access(request)
    if refusal is not None:
        return refusal
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler: a 503 when the exception is an outage of the database or Redis.

    Django calls it inside the ``except`` block of the failed request (also for async
    views: asgiref re-raises the exception in the handler's thread), so ``sys.exc_info``
    holds the exception.
    """
    part = outage.outage_of(sys.exc_info()[1])
    if part is not None:
        return outage.unavailable_response(request, part)
    return django_server_error(request)
