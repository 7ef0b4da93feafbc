"""The account pages: who you are, your roles, your second factor, your API keys, your usage."""

from __future__ import annotations

from datetime import datetime

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import api_keys, ledger, usage
from accounts.api_keys import ApiKeyInvalid
from accounts.forms import ApiKeyForm
from accounts.gates import member_required
from accounts.policies import LIMIT_FIELDS, served_model_names
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


@never_cache
@member_required
@require_http_methods(["GET", "POST"])
def key_list(request: HttpRequest) -> HttpResponse:
    """The member's keys and the form for a new one; a created key's secret is shown in this response only."""
    form = ApiKeyForm(request.POST or None, model_names=served_model_names())
    secret = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            _, secret = api_keys.create_key(
                request.user, data["name"], expires_in_days=data["expires"], models=data["models"]
            )
        except ApiKeyInvalid as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            form = ApiKeyForm(model_names=served_model_names())
    keys = [(key, api_keys.status(key)) for key in api_keys.keys_of(request.user)]
    status = 400 if request.method == "POST" and secret is None else 200
    return render(request, "accounts/api_keys.html", {"form": form, "keys": keys, "secret": secret}, status=status)


@member_required
@require_POST
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the member's own keys (someone else's is not found)."""
    key = get_object_or_404(api_keys.keys_of(request.user), pk=pk)
    if api_keys.revoke(key):
        messages.success(request, f"Revoked {key.prefix} ({key.name}); it is refused from now on.")
    return redirect("api-keys")


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


def budget_widget(request: HttpRequest) -> dict[str, object]:
    """Context of the home page's budget widget: the tokens the user has left today and this month."""
    left = ledger.remaining(request.user)
    limits = [
        (label, left[key], datetime.fromisoformat(left[resets]))
        for label, key, resets in (
            ("today", "tokens_today", "day_resets_at"),
            ("this month", "tokens_this_month", "month_resets_at"),
        )
        if left[key] is not None
    ]
    return {"limited": bool(limits), "limits": limits}
