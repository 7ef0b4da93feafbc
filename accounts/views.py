"""The account page (who you are, your roles, your second factor) and the Usage page."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts import usage
from accounts.policies import LIMIT_FIELDS
from accounts.roles import role_names


@require_GET
def account(request: HttpRequest) -> HttpResponse:
    mfa_types = set(Authenticator.objects.filter(user=request.user).values_list("type", flat=True))
    return render(
        request,
        "accounts/account.html",
        {"roles": sorted(role_names(request.user)), "mfa_enabled": Authenticator.Type.TOTP in mfa_types},
    )


def roles_line(request: HttpRequest) -> dict[str, object]:
    """Context of the home page's "Signed in as" widget: the user's role names."""
    return {"roles": sorted(role_names(request.user))}


@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    """Show the user's effective policy, their usage against it and a 30-day chart."""
    summary = usage.summary(request.user)
    limits = [(name.replace("_", " "), summary["policy"][name]) for name in LIMIT_FIELDS]
    return render(
        request,
        "accounts/usage.html",
        {"summary": summary, "limits": limits, "chart": usage.chart(request.user)},
    )
