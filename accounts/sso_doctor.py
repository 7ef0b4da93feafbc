"""`manage.py doctor --sso`: test the company sign-in configuration against the real servers.

For each OpenID Connect provider: the discovery document, the signing keys, the redirect
URI the portal will use (asked of the provider's authorization endpoint) and the client
secret (a token request with a made-up code: a provider that knows the client answers
``invalid_grant``, one that does not accept the secret ``invalid_client``). For LDAP: the
connection and bind, and with ``--user NAME`` the search for that user and the portal groups
their directory groups map to. Nothing is changed anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from django.conf import settings
from django.urls import reverse

from accounts.group_sync import mapped_groups
from portal.doctor import FAIL, OK, WARN, Finding

TIMEOUT = 10.0


def redirect_uri(provider_id: str) -> str | None:
    """Return the callback URL the portal sends for ``provider_id`` (needs PORTAL_PUBLIC_URL)."""
    if not settings.PORTAL_PUBLIC_URL:
        return None
    path = reverse("openid_connect_callback", kwargs={"provider_id": provider_id})
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path


def _discovery_url(server_url: str) -> str:
    return server_url if "/.well-known/" in server_url else server_url.rstrip("/") + "/.well-known/openid-configuration"


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def check_provider(provider_id: str, config: dict[str, Any]) -> Iterator[Finding]:
    """Check one OpenID Connect provider, step by step; stop at the first step that fails."""
    name = f"oidc {provider_id}"
    env = f"PORTAL_OIDC_{provider_id.upper().replace('-', '_')}_"
    url = _discovery_url(str(config["server_url"]))
    try:
        response = httpx.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        discovery = response.json()
        endpoints = {key: discovery[key] for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        yield Finding(
            name,
            FAIL,
            f"The discovery document at {url} could not be read ({exc!r}).",
            f"Set {env}SERVER_URL to the provider's issuer URL (the part before /.well-known/openid-configuration) "
            "and make sure this machine reaches it.",
        )
        return
    yield Finding(name, OK, f"Discovery document read from {url} (issuer {discovery.get('issuer')}).")
    try:
        keys = httpx.get(endpoints["jwks_uri"], timeout=TIMEOUT).raise_for_status().json().get("keys") or []
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        keys, problem = [], repr(exc)
    else:
        problem = "it holds no keys"
    if not keys:
        yield Finding(
            name,
            FAIL,
            f"The signing keys at {endpoints['jwks_uri']} could not be used: {problem}.",
            "The provider must publish its signing keys; ask its administrator.",
        )
        return
    yield Finding(name, OK, f"{len(keys)} signing key(s) published.")
    callback = redirect_uri(provider_id)
    if callback is None:
        yield Finding(
            name,
            WARN,
            "The redirect URI cannot be checked without PORTAL_PUBLIC_URL.",
            "Set PORTAL_PUBLIC_URL to the address people open; the redirect URI is then "
            f"PORTAL_PUBLIC_URL + {reverse('openid_connect_callback', kwargs={'provider_id': provider_id})}.",
        )
    else:
        yield _check_redirect_uri(name, env, endpoints["authorization_endpoint"], config, callback)
    yield _check_secret(name, env, discovery, config, callback or "https://portal.invalid/")


def _check_redirect_uri(name: str, env: str, endpoint: str, config: dict[str, Any], callback: str) -> Finding:
    # A PKCE challenge too, or a provider that requires PKCE would refuse for that reason.
    params = {
        "client_id": config["client_id"],
        "redirect_uri": callback,
        "response_type": "code",
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    try:
        response = httpx.get(endpoint, params=params, timeout=TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Finding(
            name, FAIL, f"The authorization endpoint {endpoint} does not answer ({exc!r}).", "Check the provider."
        )
    # A provider redirects only to a registered redirect URI (its login page, or the URI with an error).
    if response.is_redirect:
        return Finding(name, OK, f"The provider accepts the redirect URI {callback}.")
    text = response.text.lower()
    if "client" in text and "redirect" not in text:
        return Finding(
            name,
            FAIL,
            f"The provider does not know the client id {config['client_id']!r} (HTTP {response.status_code}).",
            f"Set {env}CLIENT_ID to the client id the provider shows for this portal.",
        )
    return Finding(
        name,
        FAIL,
        f"The provider refused the redirect URI {callback} (HTTP {response.status_code}).",
        f"Register exactly {callback} as a redirect URI of client {config['client_id']!r} at the provider, "
        "or correct PORTAL_PUBLIC_URL if that is not the address people open.",
    )


def _check_secret(name: str, env: str, discovery: dict[str, Any], config: dict[str, Any], callback: str) -> Finding:
    """Send a token request with a made-up code: only the client authentication can be right."""
    methods = discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    method = config["token_auth_method"]
    if method == "auto":
        method = "client_secret_post" if "client_secret_post" in methods else "client_secret_basic"
    data = {"grant_type": "authorization_code", "code": "portal-doctor-probe", "redirect_uri": callback}
    auth = None
    if method == "client_secret_basic":
        auth = httpx.BasicAuth(str(config["client_id"]), str(config["secret"]))
    else:
        data |= {"client_id": str(config["client_id"]), "client_secret": str(config["secret"])}
    try:
        response = httpx.post(discovery["token_endpoint"], data=data, auth=auth, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return Finding(name, FAIL, f"The token endpoint does not answer ({exc!r}).", "Check the provider.")
    code = _error_code(response)
    if code == "invalid_client" or response.status_code == 401:
        return Finding(
            name,
            FAIL,
            f"The provider refused the client secret of {config['client_id']!r} (invalid_client).",
            f"Set {env}CLIENT_SECRET (or {env}CLIENT_SECRET_FILE) to the client's current secret at the provider.",
        )
    if code in ("invalid_grant", "invalid_request"):
        return Finding(name, OK, f"The provider accepts the client id and secret ({method}).")
    return Finding(
        name,
        WARN,
        f"The client secret could not be tested: the token endpoint answered HTTP {response.status_code} {code}.",
        "Sign in once to test it.",
    )


def check_oidc(user: str | None) -> Iterator[Finding]:
    """Check every configured OpenID Connect provider."""
    for provider_id, config in settings.PORTAL_OIDC.items():
        yield from check_provider(provider_id, config)


def check_ldap(user: str | None) -> Iterator[Finding]:
    """Connect and bind to the directory; with ``user``, find them and show their mapped groups."""
    if not settings.PORTAL_LDAP:
        return
    from accounts.ldap_directory import probe

    yield from probe(settings.PORTAL_LDAP, user)


def check_configured(user: str | None) -> Iterator[Finding]:
    """Say when there is nothing to check, and what the group rules are."""
    if not settings.PORTAL_OIDC and not settings.PORTAL_LDAP:
        yield Finding(
            "sso",
            WARN,
            "No company sign-in is configured.",
            "Set PORTAL_OIDC_PROVIDERS or PORTAL_LDAP_SERVER_URI (docs/sso.md).",
        )
        return
    yield Finding(
        "sso",
        OK,
        f"Groups: {settings.PORTAL_SSO_GROUP_SYNC}; a mapped group is "
        f"{'required' if settings.PORTAL_SSO_REQUIRE_GROUP else 'not required'} to sign in; "
        f"local passwords {'on' if settings.PORTAL_LOCAL_LOGIN else 'off'}.",
    )
    yield from _check_mapped_groups_exist()


def _check_mapped_groups_exist() -> Iterator[Finding]:
    from django.contrib.auth.models import Group

    from accounts.roles import ALL_ROLES

    maps = [config["group_map"] for config in settings.PORTAL_OIDC.values()]
    if settings.PORTAL_LDAP:
        maps.append(settings.PORTAL_LDAP["group_map"])
    named = {name for mapping in maps for names in mapping.values() for name in names}
    existing = set(Group.objects.filter(name__in=named).values_list("name", flat=True)) | set(ALL_ROLES)
    for missing in sorted(named - existing):
        yield Finding(
            "sso groups",
            FAIL,
            f"The group mapping names the portal group {missing!r}, which does not exist.",
            "Create the group in Django admin (Groups) or correct the mapping.",
        )


def describe_mapping(groups: list[str], mapping: Any) -> str:
    """Return "a, b -> X, Y" for the doctor's report of a user's groups."""
    portal = sorted(mapped_groups(groups, mapping))
    return f"{', '.join(groups) or 'no groups'} -> {', '.join(portal) or 'no portal group'}"


SSO_CHECKS = (check_configured, check_oidc, check_ldap)
