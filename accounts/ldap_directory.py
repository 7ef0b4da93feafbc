"""Probe the LDAP directory for ``doctor --sso``: connect, bind, find a user, list their groups."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import ldap

from accounts.ldap_backend import AmbiguousUser, PortalLDAPBackend, connection_options, directory_groups
from portal.doctor import FAIL, OK, Finding

NAME = "ldap"


def _connect(config: dict[str, Any]) -> Any:
    connection = ldap.initialize(config["server_uri"], bytes_mode=False)
    for option, value in connection_options(config).items():
        connection.set_option(option, value)
    if config["start_tls"]:
        connection.start_tls_s()
    connection.simple_bind_s(config["bind_dn"], config["bind_password"])
    return connection


def _answers_tcp(uri: str) -> bool:
    """True when something accepts a TCP connection at the URI's host and port."""
    parts = urlsplit(uri)
    port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=3):
            return True
    except OSError:
        return False


def _connection_failure(config: dict[str, Any], exc: ldap.LDAPError) -> Finding:
    uri = config["server_uri"]
    tls = uri.startswith("ldaps://") or config["start_tls"]
    if isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR) and tls and _answers_tcp(uri):
        return Finding(
            NAME,
            FAIL,
            f"The LDAP server at {uri} answers, but the TLS handshake failed ({_ldap_text(exc)}).",
            "Set PORTAL_LDAP_CA_FILE to the CA certificate that signed the server's certificate, and make sure "
            "that certificate names the host in PORTAL_LDAP_SERVER_URI.",
        )
    if isinstance(exc, ldap.SERVER_DOWN):
        return Finding(
            NAME,
            FAIL,
            f"The LDAP server at {uri} does not answer ({_ldap_text(exc)}).",
            "Check PORTAL_LDAP_SERVER_URI (host and port: 389 for ldap://, 636 for ldaps://), that the server runs "
            "and that no firewall is in between; for TLS, PORTAL_LDAP_CA_FILE must hold the server's CA.",
        )
    if isinstance(exc, ldap.INVALID_CREDENTIALS):
        return Finding(
            NAME,
            FAIL,
            f"The LDAP server at {uri} refused the bind as {config['bind_dn'] or 'anonymous'!r}.",
            "Set PORTAL_LDAP_BIND_DN and PORTAL_LDAP_BIND_PASSWORD (or _FILE) to a service account that may search.",
        )
    return Finding(
        NAME, FAIL, f"The LDAP server at {uri} answered with an error: {_ldap_text(exc)}.", "See the server's log."
    )


def _ldap_text(exc: ldap.LDAPError) -> str:
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(detail.get("desc", "")) + (f": {detail['info']}" if detail.get("info") else "") or repr(exc)


def probe(config: dict[str, Any], username: str | None) -> Iterator[Finding]:
    """Yield findings for the connection and, with ``username``, the user's entry and groups."""
    from django.conf import settings

    from accounts.sso_doctor import describe_mapping

    try:
        _connect(config).unbind_s()
    except ldap.LDAPError as exc:
        yield _connection_failure(config, exc)
        return
    yield Finding(NAME, OK, f"Connected to {config['server_uri']} and bound as {config['bind_dn'] or 'anonymous'}.")
    if not username:
        return
    from django_auth_ldap.backend import _LDAPUser

    ldap_user = _LDAPUser(PortalLDAPBackend(), username=username)
    try:
        dn = ldap_user.dn
    except AmbiguousUser as ambiguous:
        yield Finding(
            NAME,
            FAIL,
            f"{len(ambiguous.dns)} directory entries match {username!r}: {'; '.join(ambiguous.dns)}. "
            "Such a user is refused at sign-in.",
            "Make the attribute in PORTAL_LDAP_USER_FILTER unique in the directory, or narrow the filter.",
        )
        return
    if dn is None:
        yield Finding(
            NAME,
            FAIL,
            f"No directory entry matches {username!r}.",
            "Check PORTAL_LDAP_USER_SEARCH_BASE and PORTAL_LDAP_USER_FILTER (e.g. (sAMAccountName=%(user)s) for AD).",
        )
        return
    yield Finding(NAME, OK, f"{username!r} is {dn}.")
    try:
        groups = directory_groups(ldap_user)
    except ldap.LDAPError as exc:
        yield Finding(
            NAME, FAIL, f"The group search failed: {_ldap_text(exc)}.", "Check PORTAL_LDAP_GROUP_SEARCH_BASE."
        )
        return
    yield Finding(NAME, OK, f"Groups of {username!r}: {describe_mapping(groups, settings.PORTAL_LDAP['group_map'])}.")
