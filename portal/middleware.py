"""HTTP middleware of the portal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase


class ContentSecurityPolicyMiddleware:
    """Send the Content-Security-Policy header on every response that lacks one.

    Django 5.2 has no CSP support of its own; the policy is one setting string.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy: str = settings.PORTAL_CSP

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Django's, except that a view marked ``login_not_required`` is let through first.

    Django's asks whether the user is signed in before looking at the view, which loads the
    session from the database on every request that carries a cookie. ``/healthz`` and
    ``/readyz`` must answer without the database: ``/readyz`` says that it is down.
    """

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponseBase | None:
        if not getattr(view_func, "login_required", True):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
