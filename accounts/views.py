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


def budget_widget(request: HttpRequest) -> dict[str, object]:
    """Context of the home page's budget widget: the tokens the user has left.

    TODO(quota ledger, issue 8): fill ``remaining`` and ``resets_at`` from accounts/ledger.py;
    until the ledger lands there are no limits, and the widget says so.
    """
    return {"limited": False, "remaining": None, "resets_at": None}
