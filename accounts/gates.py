"""The role gate of views: one decorator that refuses users without a role with 403.

Anonymous users never get here: the login middleware sends them to log in first. The
navigation hides what a role may not use, but a hidden link is never the only guard; every
view of a role-bound page is wrapped in :func:`role_required` (or one of its two names).
"""

from __future__ import annotations

from collections.abc import Callable

from accounts.roles import ROLE_CHECKS
from portal.access import View
from portal.access import role_required as _portal_role_required


def role_required(role: str) -> Callable[[View], View]:
    """Return a decorator that lets only users holding ``role`` through; others get 403.

    ``role`` is a key of :data:`accounts.roles.ROLE_CHECKS`; an unknown one raises
    ``KeyError`` when the view module is imported, not on a request. The gate itself is
    :func:`portal.access.role_required` (plugins use that one).
    """
    ROLE_CHECKS[role]
    return _portal_role_required(role)


member_required = role_required("member")
admin_required = role_required("admin")
