"""Report a failed company sign-in: a sentence for the person, the reason for the log and the audit trail."""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

# The request attribute where a backend leaves the sentence for the login form.
REQUEST_ATTRIBUTE = "portal_sign_in_failure"


def report(request: Any, who: str, reason: str, message: str) -> None:
    """Log ``reason``, add it to the audit trail when there is one, and keep ``message`` for the page."""
    logger.warning("sign-in of %r failed: %s", who, reason)
    if request is not None:
        setattr(request, REQUEST_ATTRIBUTE, message)
    try:
        trail = importlib.import_module("portal.audit.trail")
    except ImportError:
        return  # no audit trail in this version
    ip = trail.client_ip(request) if request is not None else ""
    trail.record("auth.login_failed", ip=ip, target=who, outcome="refused", actor_name="", data={"reason": reason})


def message_for(request: Any) -> str | None:
    """Return the sentence a backend left on ``request`` for the login form, if any."""
    return getattr(request, REQUEST_ATTRIBUTE, None)
