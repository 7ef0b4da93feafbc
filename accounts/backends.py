"""Password sign-in against the portal's own accounts while local login is off.

With ``PORTAL_LOCAL_LOGIN=false`` this backend replaces Django's and allauth's password
backends (portal/settings.py): only the break-glass users (``PORTAL_LOCAL_LOGIN_USERS``)
may still sign in with a password stored in the portal, so an admin gets in when the
company's provider is down. Sessions and permissions work as before.
"""

from __future__ import annotations

from typing import Any

from allauth.account.auth_backends import AuthenticationBackend
from django.conf import settings


class LocalPasswordBackend(AuthenticationBackend):
    """allauth's backend (user name or e-mail address) for the break-glass users only."""

    def authenticate(self, request: Any, **credentials: Any) -> Any:
        user = super().authenticate(request, **credentials)
        if user is not None and user.get_username() not in settings.PORTAL_LOCAL_LOGIN_USERS:
            return None
        return user
