"""Steps a signed-in user must take before any other page: a new password, then MFA for admins.

The first admin's password was printed to a terminal by ``manage.py bootstrap``; it is
replaced at the first login (``accounts.models.PasswordChangeRequired``). With
``PORTAL_ADMIN_MFA_REQUIRED`` (on in production) an admin without two-factor authentication
reaches nothing but the pages that turn it on: not the Django admin, not the portal's admin
pages, not even the home page, so that no admin page or action added later can be missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.models import PasswordChangeRequired
from accounts.roles import is_admin

# Pages every step leaves open: leaving, and allauth's "enter your password again".
_ALWAYS_OPEN = frozenset({"account_logout", "account_reauthenticate", "mfa_reauthenticate"})


@dataclass(frozen=True)
class Step:
    """Where the user is sent (a URL name), the pages open meanwhile, and what they are told."""

    page: str
    open_pages: frozenset[str]
    message: str


NEW_PASSWORD = Step(
    "account_change_password",
    _ALWAYS_OPEN | {"account_change_password", "account_set_password"},
    "Choose a new password: the one printed when the portal was set up must not stay in use.",
)
ADMIN_MFA = Step(
    "mfa_activate_totp",
    _ALWAYS_OPEN
    | {
        "mfa_index",
        "mfa_activate_totp",
        "mfa_view_recovery_codes",
        "mfa_generate_recovery_codes",
        "mfa_download_recovery_codes",
        # allauth refuses MFA to an account with an unverified address: let them verify it.
        "account_email",
        "account_email_verification_sent",
        "account_confirm_email",
    },
    "Admins must turn on two-factor authentication before anything else.",
)


def pending_step(user: Any) -> Step | None:
    """Return the first step ``user`` has still to take, or None when they may go anywhere."""
    if not getattr(user, "is_authenticated", False):
        return None
    if PasswordChangeRequired.objects.filter(user_id=user.pk).exists():
        return NEW_PASSWORD
    if settings.PORTAL_ADMIN_MFA_REQUIRED and is_admin(user) and not is_mfa_enabled(user):
        return ADMIN_MFA
    return None


class RequiredStepsMiddleware:
    """Redirect a user with a pending step to its page; requests without a session pass."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        if not getattr(view, "login_required", True):
            # A public view (``login_not_required``: /healthz, /readyz, sign-in pages) needs no
            # step and must not read the session: /readyz answers while the database is down.
            return None
        step = pending_step(request.user)
        if step is None or request.resolver_match is None or request.resolver_match.view_name in step.open_pages:
            return None
        messages.warning(request, step.message)
        return redirect(step.page)
