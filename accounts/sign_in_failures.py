"""Report a failed company sign-in: a sentence for the person, the reason for the log and the audit trail."""

from __future__ import annotations

import logging
from typing import Any

from portal.audit.signals import LOGIN_FAILED, LOGIN_FAILURE_REASON
from portal.audit.trail import client_ip, record

logger = logging.getLogger(__name__)

# The request attribute where a backend leaves the sentence for the login form.
REQUEST_ATTRIBUTE = "portal_sign_in_failure"


def report(request: Any, who: str, reason: str, message: str, *, password_form: bool = False) -> None:
    """Log ``reason``, put it in the audit trail, and keep ``message`` for the page.

    ``password_form``: the failure happened inside Django's ``authenticate()`` (LDAP), whose
    ``user_login_failed`` event the audit trail records anyway; the reason is added to that
    event instead of writing a second one. Otherwise (OpenID Connect) an ``auth.login_failed``
    event is written here.
    """
    logger.warning("sign-in of %r failed: %s", who, reason)
    if request is None:
        return
    setattr(request, REQUEST_ATTRIBUTE, message)
    if password_form:
        setattr(request, LOGIN_FAILURE_REASON, reason)
        return
    record(LOGIN_FAILED, ip=client_ip(request), target=who, outcome="refused", actor_name="", data={"reason": reason})


def message_for(request: Any) -> str | None:
    """Return the sentence a backend left on ``request`` for the login form, if any."""
    return getattr(request, REQUEST_ATTRIBUTE, None)
