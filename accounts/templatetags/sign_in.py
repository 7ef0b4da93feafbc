"""Template tags of the login page: is the password form shown?"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag(takes_context=True)
def company_providers(context: Any) -> list[Any]:
    """Return the configured OpenID Connect providers (none: the page asks the database nothing)."""
    if not settings.PORTAL_OIDC:
        return []
    from allauth.socialaccount.adapter import get_adapter

    providers = get_adapter().list_providers(context["request"])
    return sorted(providers, key=lambda provider: str(provider.name))


@register.simple_tag
def password_form_shown(request: Any) -> bool:
    """Show the password form when local or LDAP passwords are accepted, or for break-glass (?local=1)."""
    if settings.PORTAL_LOCAL_LOGIN or settings.PORTAL_LDAP:
        return True
    return bool(request.GET.get("local") == "1" or request.method == "POST")


@register.simple_tag
def break_glass_offered() -> bool:
    """True when local login is off but some users may still use their portal password."""
    return not settings.PORTAL_LOCAL_LOGIN and not settings.PORTAL_LDAP and bool(settings.PORTAL_LOCAL_LOGIN_USERS)
