"""Sign-in with OpenID Connect providers: allauth's social account adapter, portal rules.

- New people get an account at their first sign-in unless ``PORTAL_SSO_CREATE_USERS`` is
  off; then only an existing account with the provider's verified address is let in.
- The provider's groups claim is mapped to portal groups at every sign-in (accounts/group_sync.py).
- A failure ends on a page with one sentence; the reason goes to the log and the audit trail.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import render

from accounts import sign_in_failures
from accounts.deprovision import deactivate
from accounts.group_sync import SignInRefused, external_group_names, mapped_groups, sync_groups

logger = logging.getLogger(__name__)


def claim_value(data: dict[str, Any], claim: str) -> Any:
    """Return ``claim`` from ``data``; a dotted name walks nested objects (``realm_access.roles``)."""
    if claim in data:
        return data[claim]
    value: Any = data
    for part in claim.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def provider_groups(sociallogin: SocialLogin) -> list[str]:
    """Return the groups the provider sent in its configured claim (userinfo, else the ID token)."""
    provider_id = sociallogin.account.provider
    claim = str(settings.PORTAL_OIDC[provider_id]["groups_claim"])
    extra = sociallogin.account.extra_data or {}
    sources = [extra.get("userinfo") or {}, extra.get("id_token") or {}]
    for source in sources:
        value = claim_value(source, claim)
        if value is not None:
            return external_group_names(value)
    present = sorted({key for source in sources for key in source})
    logger.warning(
        "%s sent no %r claim (it sent: %s); the user gets no mapped group. Ask the provider to release the claim "
        "(often a 'groups' scope in PORTAL_OIDC_%s_SCOPES) or set PORTAL_OIDC_%s_GROUPS_CLAIM.",
        provider_id,
        claim,
        ", ".join(present),
        provider_id.upper(),
        provider_id.upper(),
    )
    return []


def _refuse(request: HttpRequest, who: str, reason: str, message: str) -> ImmediateHttpResponse:
    sign_in_failures.report(request, who, reason, message)
    response = render(request, "account/sign_in_failed.html", {"message": message}, status=403)
    return ImmediateHttpResponse(response)


class PortalSocialAccountAdapter(DefaultSocialAccountAdapter):
    """Group mapping, account creation rule and readable failures for OpenID Connect sign-ins."""

    def _source(self, sociallogin: SocialLogin) -> str:
        return f"oidc:{sociallogin.account.provider}"

    def _mapping(self, sociallogin: SocialLogin) -> Any:
        return settings.PORTAL_OIDC[sociallogin.account.provider]["group_map"]

    def _who(self, sociallogin: SocialLogin) -> str:
        emails = [address.email for address in sociallogin.email_addresses]
        return emails[0] if emails else f"{sociallogin.account.provider}:{sociallogin.account.uid}"

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        groups = provider_groups(sociallogin)
        sociallogin.state["portal_groups"] = groups
        user = sociallogin.user
        if user.pk is None:
            # A new account: refuse before it is made; its groups are set in save_user().
            mapping = self._mapping(sociallogin)
            if settings.PORTAL_SSO_REQUIRE_GROUP and mapping and not mapped_groups(groups, mapping):
                raise _refuse(
                    request,
                    self._who(sociallogin),
                    f"{self._source(sociallogin)}: none of the groups {sorted(groups)} is mapped",
                    "Your account has no group that gives access to this portal. "
                    "Ask your administrator to add you to one.",
                )
            return
        if not user.is_active:
            return  # allauth shows its "account inactive" page; an admin reactivates
        try:
            sync_groups(user, groups, self._mapping(sociallogin), self._source(sociallogin))
        except SignInRefused as refused:
            deactivate(user, refused.reason)
            raise _refuse(request, user.get_username(), refused.reason, refused.message) from None

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        if settings.PORTAL_SSO_CREATE_USERS:
            return True
        who = self._who(sociallogin)
        raise _refuse(
            request,
            who,
            f"{self._source(sociallogin)}: no portal account has the verified address of {who}",
            f"There is no portal account for {who}. Ask an administrator to create one with this e-mail address.",
        )

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> Any:
        user = super().save_user(request, sociallogin, form)
        sync_groups(
            user, sociallogin.state.get("portal_groups", []), self._mapping(sociallogin), self._source(sociallogin)
        )
        return user

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: Any = None,
        extra_context: Any = None,
    ) -> None:
        name = getattr(provider, "name", "the provider")
        provider_id = getattr(getattr(provider, "app", None), "provider_id", None) or getattr(provider, "id", "oidc")
        if error == "cancelled":
            message = f"The sign-in with {name} was cancelled. You can try again."
        else:
            message = (
                f"The sign-in with {name} did not work: the provider could not confirm who you are. "
                "Try again; if it keeps failing, tell your administrator (the reason is in the portal's log)."
            )
        details = "".join(f" {part!r}" for part in (exception, extra_context) if part)
        raise _refuse(request, str(provider_id), f"oidc:{provider_id}: {error}{details}", message)
