"""Customisation of django-allauth for the portal."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest


class PortalAccountAdapter(DefaultAccountAdapter):
    """Sign-up is closed unless PORTAL_SIGNUP_OPEN; new users become Members and must verify."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.PORTAL_SIGNUP_OPEN)

    def get_login_stages(self) -> list[str]:
        stages: list[str] = super().get_login_stages()
        return [
            "accounts.stages.EmailVerificationStage"
            if path == "allauth.account.stages.EmailVerificationStage"
            else path
            for path in stages
        ]

    def authenticate(self, request: HttpRequest, **credentials: Any) -> Any:
        """Authenticate; a backend's refusal with a reason (LDAP down, ambiguous user) becomes the form's error."""
        from accounts.sign_in_failures import message_for

        user = super().authenticate(request, **credentials)
        message = message_for(request) if user is None else None
        if message:
            raise ValidationError(message)
        return user

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        from accounts.roles import MEMBERS, assign_role

        user = super().save_user(request, user, form, commit=commit)
        if commit:
            assign_role(user, MEMBERS)
        return user
