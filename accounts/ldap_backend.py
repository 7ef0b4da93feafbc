"""Sign-in against LDAP / Active Directory with django-auth-ldap, on the portal's rules.

Configured by ``PORTAL_LDAP_*`` (portal/settings.py parses them into ``settings.PORTAL_LDAP``);
this module turns them into django-auth-ldap's objects. On top of django-auth-ldap:

- a user name that more than one directory entry matches is refused with a sentence, never
  guessed (django-auth-ldap alone says only that the name did not map to a DN);
- a directory that does not answer is a sentence on the login page, not "wrong password";
- the user's groups (names and DNs, nested ones included) go through the same mapping as
  OpenID Connect's (accounts/group_sync.py) at every sign-in.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import ldap
from django.conf import settings
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import (
    ActiveDirectoryGroupType,
    GroupOfNamesType,
    LDAPSearch,
    NestedActiveDirectoryGroupType,
    NestedGroupOfNamesType,
    PosixGroupType,
)

from accounts import sign_in_failures
from accounts.deprovision import deactivate
from accounts.group_sync import SignInRefused, sync_groups

logger = logging.getLogger(__name__)
# The user name being checked, for the error signal (django-auth-ldap sends no name with it).
_signing_in: contextvars.ContextVar[str] = contextvars.ContextVar("portal_ldap_signing_in", default="")

GROUP_TYPES: dict[str, Any] = {
    "groupOfNames": GroupOfNamesType,
    "nestedGroupOfNames": NestedGroupOfNamesType,
    "activeDirectory": ActiveDirectoryGroupType,
    "nestedActiveDirectory": NestedActiveDirectoryGroupType,
    "posixGroup": PosixGroupType,
}
UNREACHABLE_MESSAGE = (
    "The company directory did not answer, so your password could not be checked. "
    "Try again in a few minutes; if it keeps failing, tell your administrator."
)
AMBIGUOUS_MESSAGE = (
    "More than one directory entry matches this user name, so the portal cannot tell who you are. "
    "Ask your administrator to fix the directory."
)


class AmbiguousUser(Exception):
    """More than one directory entry matched the user name."""

    def __init__(self, username: str, dns: list[str]) -> None:
        super().__init__(f"{len(dns)} entries match {username!r}: {'; '.join(dns)}")
        self.dns = dns


class NoPortalAccount(Exception):
    """The directory knows the user but the portal creates no accounts (PORTAL_SSO_CREATE_USERS=false)."""


class StrictLDAPSearch(LDAPSearch):
    """A user search that refuses more than one result instead of treating it as none."""

    def execute(self, connection: Any, filterargs: Any = (), escape: bool = True) -> Any:
        results = super().execute(connection, filterargs, escape)
        dns = [dn for dn, _attrs in results or [] if dn]
        if len(dns) > 1:
            username = filterargs.get("user", "") if isinstance(filterargs, dict) else ""
            raise AmbiguousUser(str(username), dns)
        return results


def connection_options(config: dict[str, Any]) -> dict[int, Any]:
    """Return python-ldap options: timeouts, no referrals (AD), the CA file for TLS."""
    options: dict[int, Any] = {
        ldap.OPT_NETWORK_TIMEOUT: config["timeout"],
        ldap.OPT_TIMEOUT: config["timeout"],
        ldap.OPT_REFERRALS: 0,
        ldap.OPT_PROTOCOL_VERSION: 3,
    }
    if config["ca_file"]:
        options[ldap.OPT_X_TLS_CACERTFILE] = config["ca_file"]
        options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND
        options[ldap.OPT_X_TLS_NEWCTX] = 0  # must come last: applies the TLS options above
    return options


def ldap_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Return django-auth-ldap's settings (without the AUTH_LDAP_ prefix) for ``settings.PORTAL_LDAP``."""
    values: dict[str, Any] = {
        "SERVER_URI": config["server_uri"],
        "START_TLS": config["start_tls"],
        "CONNECTION_OPTIONS": connection_options(config),
        "BIND_DN": config["bind_dn"],
        "BIND_PASSWORD": config["bind_password"],
        "USER_ATTR_MAP": dict(config["attributes"]),
        "ALWAYS_UPDATE_USER": True,
    }
    if config["user_dn_template"]:
        values["USER_DN_TEMPLATE"] = config["user_dn_template"]
    else:
        values["USER_SEARCH"] = StrictLDAPSearch(config["user_search_base"], ldap.SCOPE_SUBTREE, config["user_filter"])
    if config["group_search_base"]:
        values["GROUP_SEARCH"] = LDAPSearch(config["group_search_base"], ldap.SCOPE_SUBTREE, config["group_filter"])
        values["GROUP_TYPE"] = GROUP_TYPES[config["group_type"]]()
    return values


def directory_groups(ldap_user: Any) -> list[str]:
    """Return the user's group names and DNs (the mapping may use either)."""
    if ldap_user.settings.GROUP_SEARCH is None:
        return []
    return sorted(set(ldap_user.group_names) | set(ldap_user.group_dns))


class PortalLDAPBackend(LDAPBackend):
    """django-auth-ldap with clear refusals and the portal's group mapping."""

    @property
    def default_settings(self) -> dict[str, Any]:
        return ldap_settings(settings.PORTAL_LDAP)

    def get_or_build_user(self, username: str, ldap_user: Any) -> Any:
        user, built = super().get_or_build_user(username, ldap_user)
        if built and not settings.PORTAL_SSO_CREATE_USERS:
            raise NoPortalAccount(username)
        return user, built

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        request = ldap_user._request
        username = ldap_user._username
        token = _signing_in.set(username)
        try:
            user = super().authenticate_ldap_user(ldap_user, password)
        except AmbiguousUser as ambiguous:
            sign_in_failures.report(request, username, f"ldap: {ambiguous}", AMBIGUOUS_MESSAGE, password_form=True)
            return None
        except NoPortalAccount:
            sign_in_failures.report(
                request,
                username,
                f"ldap: {username!r} is in the directory but has no portal account (PORTAL_SSO_CREATE_USERS=false)",
                f"There is no portal account for {username}. Ask an administrator to create one.",
                password_form=True,
            )
            return None
        finally:
            _signing_in.reset(token)
        if user is None:
            return None
        if not user.is_active:
            sign_in_failures.report(
                request, username, "ldap: the account is deactivated in the portal", _INACTIVE, password_form=True
            )
            return None
        try:
            sync_groups(user, directory_groups(ldap_user), settings.PORTAL_LDAP["group_map"], "ldap")
        except SignInRefused as refused:
            deactivate(user, refused.reason)
            sign_in_failures.report(request, username, refused.reason, refused.message, password_form=True)
            return None
        return user


_INACTIVE = "This account is deactivated in the portal. Ask an administrator to reactivate it."


def _directory_error(sender: Any, context: str, user: Any, request: Any, exception: Exception, **kwargs: Any) -> None:
    """Turn django-auth-ldap's error signal into a sentence for the login page."""
    if sender is not PortalLDAPBackend:
        return
    username = getattr(user, "username", "") if user is not None else _signing_in.get()
    sign_in_failures.report(
        request, username, f"ldap {context}: {exception!r}", UNREACHABLE_MESSAGE, password_form=True
    )


ldap_error.connect(_directory_error, dispatch_uid="portal-ldap-error")
