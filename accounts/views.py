"""The account page: who you are, your roles, your second factor."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

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
