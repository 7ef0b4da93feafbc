"""Record sign-in events: logins, failed logins, logouts, MFA added or removed.

Django's auth signals and allauth's (both libraries, not portal apps) carry the request, so
the actor and the IP come from it. Password changes, role changes and (de)activation
are recorded by the accounts app, which owns users and roles (whatever page made them).
"""

from __future__ import annotations

from typing import Any

from allauth.mfa.signals import authenticator_added, authenticator_removed
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from portal.audit.trail import client_ip, record

LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
# The request attribute where an authentication backend explains a failed password sign-in.
LOGIN_FAILURE_REASON = "audit_login_failure_reason"
LOGOUT = "auth.logout"
MFA_ADDED = "auth.mfa_added"
MFA_REMOVED = "auth.mfa_removed"


def _ip(request: Any) -> str:
    return client_ip(request) if request is not None else ""


@receiver(user_logged_in)
def logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record(LOGIN, actor=user, ip=_ip(request), target=user.get_username())


@receiver(user_login_failed)
def login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # Django has already removed the password from ``credentials``; only the name is kept.
    name = str(credentials.get("username") or credentials.get("email") or "")
    # A backend that knows why (LDAP down, an ambiguous user, no mapped group) leaves the reason here.
    reason = getattr(request, LOGIN_FAILURE_REASON, None) if request is not None else None
    data = {"reason": str(reason)} if reason else None
    record(LOGIN_FAILED, ip=_ip(request), target=name, outcome="refused", actor_name="", data=data)


@receiver(user_logged_out)
def logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(LOGOUT, actor=user, ip=_ip(request), target=user.get_username())


@receiver(authenticator_added)
def mfa_added(sender: Any, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    record(MFA_ADDED, actor=user, ip=_ip(request), target=user.get_username(), data={"type": authenticator.type})


@receiver(authenticator_removed)
def mfa_removed(sender: Any, request: Any, user: Any, authenticator: Any, **kwargs: Any) -> None:
    record(MFA_REMOVED, actor=user, ip=_ip(request), target=user.get_username(), data={"type": authenticator.type})
