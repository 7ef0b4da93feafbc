"""What the accounts app stores beyond Django's user and allauth's tables."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SelfSignUp(models.Model):
    """A user who created their own account through open sign-up.

    Only these users must verify their e-mail address before logging in
    (``accounts.stages.EmailVerificationStage``); accounts made by an admin or by
    ``manage.py bootstrap`` have no row here and may have no mailbox at all.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="self_sign_up"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "self sign-up"

    def __str__(self) -> str:
        return f"{self.user} signed up on {self.created_at:%Y-%m-%d}"
