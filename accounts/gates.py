"""The role gate of views: one decorator that refuses users without a role with 403.

Anonymous users never get here: the login middleware sends them to log in first. The
navigation hides what a role may not use, but a hidden link is never the only guard; every
view of a role-bound page is wrapped in :func:`role_required` (or one of its two names).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.roles import ROLE_CHECKS

View = Callable[..., HttpResponse]


def role_required(role: str) -> Callable[[View], View]:
    """Return a decorator that lets only users holding ``role`` through; others get 403.

    ``role`` is a key of :data:`accounts.roles.ROLE_CHECKS`; an unknown one raises
    ``KeyError`` when the view module is imported, not on a request.
    """
    check = ROLE_CHECKS[role]

    def decorate(view: View) -> View:
        @wraps(view)
        def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return gated

    return decorate


member_required = role_required("member")
admin_required = role_required("admin")
