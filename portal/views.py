"""Core pages: home, account, health and readiness."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.roles import is_admin, role_names
from portal import health


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html", {"roles": sorted(role_names(request.user))})


@require_GET
def account(request: HttpRequest) -> HttpResponse:
    from allauth.mfa.models import Authenticator

    mfa_types = set(Authenticator.objects.filter(user=request.user).values_list("type", flat=True))
    return render(
        request,
        "portal/account.html",
        {"roles": sorted(role_names(request.user)), "mfa_enabled": Authenticator.Type.TOTP in mfa_types},
    )


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
    checks = report if is_admin(request.user) else health.summary(report)
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)
