"""The Usage page: every user sees their usage today and this month against their policy."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts import usage
from accounts.policies import LIMIT_FIELDS


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
