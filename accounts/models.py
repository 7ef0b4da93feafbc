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


class ApiKey(models.Model):
    """A personal key for the ``/v1`` API: it acts as its owner, within its own limits.

    Only a keyed hash of the secret is stored (``accounts/api_keys.py`` says why); the
    ``prefix`` is the public part of the key, kept to recognise it in lists and the audit
    trail. An empty ``model_names`` list means every model the owner may use.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    model_names = models.JSONField(default=list, blank=True, help_text="Served model names; empty: all allowed models.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"
