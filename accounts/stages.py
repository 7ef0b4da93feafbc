"""allauth login stages of the portal."""

from __future__ import annotations

from typing import Any

from allauth.account.stages import EmailVerificationStage as AllauthEmailVerificationStage


class EmailVerificationStage(AllauthEmailVerificationStage):
    """Ask for a verified e-mail address only from users who signed up themselves.

    ``ACCOUNT_EMAIL_VERIFICATION="mandatory"`` (set while sign-up is open) would otherwise
    lock out every account an admin created without a verified address, the first admin
    included. Signing up is the only way to claim an address the portal has not checked.
    """

    def handle(self) -> tuple[Any, bool]:
        from accounts.models import SelfSignUp

        if not SelfSignUp.objects.filter(user_id=self.login.user.pk).exists():
            return None, True
        response, cont = super().handle()
        return response, cont
