"""Core pages: home, health, readiness and metrics."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import dashboard, health, metrics
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
    checks = report if has_role(request.user, "admin") else health.summary(report)
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)


@login_not_required
@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for the metrics token (``Authorization: Bearer``) or a staff session."""
    refusal = metrics_access(request)
    if refusal is not None:
        return refusal
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
