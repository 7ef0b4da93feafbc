"""Ask whether a user holds a role, without knowing how roles are stored.

The accounts app owns roles and fills the registry's ``role_checks`` store with one check per
role name (``member``, ``auditor``, ``admin``). ``portal/`` asks here, so it never imports
``accounts``. A role nobody registered is held by nobody: the answer fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from portal.registry import registry

View = Callable[..., HttpResponse]


def has_role(user: Any, role: str) -> bool:
    """Return True when ``user`` holds ``role``; False for anonymous users and unknown roles."""
    check = registry["role_checks"].get(role)
    return bool(check is not None and check(user))


def role_required(role: str) -> Callable[[View], View]:
    """Return a view decorator that lets only users holding ``role`` through; others get 403.

    Anonymous users never get here: the login middleware sends them to log in first.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return gated

    return decorate
