"""System check: production must say where its mail goes, or password-reset links land in the log."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register


@register(Tags.security, deploy=True)
def check_mail_backend(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Refuse the console mail backend that production would take by default.

    Password-reset mails carry a link that logs anyone in as the user; the console backend
    writes it to the log, which more people read than the mailbox. Naming the console backend
    in ``PORTAL_EMAIL_BACKEND`` on purpose is accepted (a portal without mail, run by the
    people who read its log).
    """
    if settings.PRODUCTION and not settings.PORTAL_EMAIL_BACKEND:
        return [
            Error(
                "No e-mail backend is configured: production would write password-reset links (which log anyone "
                "in) to the log.",
                hint="Set PORTAL_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend with PORTAL_EMAIL_HOST, "
                "PORTAL_EMAIL_PORT and PORTAL_FROM_EMAIL (docs/configuration.md), or set "
                "PORTAL_EMAIL_BACKEND=django.core.mail.backends.console.EmailBackend to keep the console on purpose.",
                id="accounts.E002",
            )
        ]
    return []
