"""Tell the portal's admins that an engine failed: one mail per episode, with what to change.

The supervisor decides *when* (the first crash of a streak, and the crash loop that ends
it); this module decides *who* and *what*: the active admins' addresses plus
``settings.ADMINS``, the diagnosis, the remedies and the log line.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection, send_mail
from django.db.models import Q

from accounts.roles import ADMINS
from inference.diagnosis import Diagnosis
from inference.engine_process import engine_log_path
from inference.models import EngineConfig

log = logging.getLogger(__name__)

# A mail server that does not answer must not stall the supervisor's reconcile loop for long.
MAIL_TIMEOUT = 10.0


def admin_addresses() -> list[str]:
    """Return the mail addresses of active portal admins (and superusers) plus settings.ADMINS."""
    users = get_user_model().objects.filter(is_active=True).filter(Q(is_superuser=True) | Q(groups__name=ADMINS))
    addresses = [str(email) for email in users.exclude(email="").values_list("email", flat=True)]
    addresses += [admin[1] if isinstance(admin, (tuple, list)) else str(admin) for admin in settings.ADMINS]
    return sorted(set(addresses))


def tell_admins(config: EngineConfig, message: str, diagnosis: Diagnosis) -> None:
    """Mail the portal's admins that ``config`` crashed, with the diagnosis and what to change.

    Uses the configured email backend. Never raises: a mail failure is logged, and the
    engine pages show the same diagnosis anyway.
    """
    recipients = admin_addresses()
    if not recipients:
        log.warning("engine %s failed, but no admin has a mail address to tell", config.name)
        return
    lines = [message, "", diagnosis.summary, "", "What to change:"]
    lines += [f"- {remedy}" for remedy in diagnosis.remedies]
    if diagnosis.evidence:
        lines += ["", f"Log line: {diagnosis.evidence}"]
    lines += ["", f"Engine page: /engines/{config.name}/ of the portal (log: {engine_log_path(config.name)})"]
    subject = " ".join(f"[portal] engine {config.name}: {diagnosis.summary}".split())[:200]
    try:
        send_mail(
            subject,
            "\n".join(lines),
            None,
            recipients,
            connection=get_connection(timeout=MAIL_TIMEOUT),
        )
    except Exception:  # a broken mail setup must not take the supervisor down
        log.exception("engine %s: could not mail the admins", config.name)
