"""doctor --sso against the real provider and the real slapd: each mistake named with its fix."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.browser import free_port
from tests.ldap_server import Slapd, slapd  # noqa: F401 - the fixture
from tests.oidc_server import OidcProvider, oidc_provider  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def doctor(*args: str) -> tuple[str, bool]:
    out = StringIO()
    try:
        call_command("doctor", "--sso", *args, stdout=out)
    except CommandError:
        return out.getvalue(), False
    return out.getvalue(), True


def test_a_correct_provider_passes_every_check(settings: Any, oidc_provider: OidcProvider) -> None:  # noqa: F811
    settings.PORTAL_OIDC = oidc_provider.settings_for()
    settings.PORTAL_PUBLIC_URL = "http://testserver"
    output, passed = doctor()
    assert passed, output
    assert "accepts the redirect URI http://testserver/accounts/oidc/company/login/callback/" in output
    assert "accepts the client id and secret" in output


def test_a_wrong_client_secret_is_named(settings: Any, oidc_provider: OidcProvider) -> None:  # noqa: F811
    settings.PORTAL_OIDC = oidc_provider.settings_for(secret="not-the-secret")
    settings.PORTAL_PUBLIC_URL = "http://testserver"
    output, passed = doctor()
    assert not passed
    assert "refused the client secret of 'portal' (invalid_client)" in output
    assert "PORTAL_OIDC_COMPANY_CLIENT_SECRET" in output


def test_a_wrong_redirect_uri_is_named(settings: Any, oidc_provider: OidcProvider) -> None:  # noqa: F811
    settings.PORTAL_OIDC = oidc_provider.settings_for()
    settings.PORTAL_PUBLIC_URL = "https://portal.example.com"
    output, passed = doctor()
    assert not passed
    assert "refused the redirect URI https://portal.example.com/accounts/oidc/company/login/callback/" in output
    assert "Register exactly" in output


def test_an_unreachable_provider_is_named(settings: Any, oidc_provider: OidcProvider) -> None:  # noqa: F811
    settings.PORTAL_OIDC = oidc_provider.settings_for(server_url=f"http://127.0.0.1:{free_port()}")
    output, passed = doctor()
    assert not passed
    assert "The discovery document at" in output
    assert "PORTAL_OIDC_COMPANY_SERVER_URL" in output


def test_an_unreachable_ldap_server_is_named(settings: Any) -> None:
    settings.PORTAL_LDAP = Slapd.settings_for_uri(f"ldap://127.0.0.1:{free_port()}")
    output, passed = doctor()
    assert not passed
    assert "does not answer" in output
    assert "PORTAL_LDAP_SERVER_URI" in output


def test_a_user_is_found_with_the_groups_it_maps_to(settings: Any, slapd: Slapd) -> None:  # noqa: F811
    settings.PORTAL_LDAP = slapd.settings()
    output, passed = doctor("--user", "carol")
    assert passed, output
    assert "'carol' is uid=carol,ou=people,dc=example,dc=org" in output
    assert "-> Members" in output
    assert "engineering" in output


def test_an_ambiguous_user_is_named(settings: Any, slapd: Slapd) -> None:  # noqa: F811
    settings.PORTAL_LDAP = slapd.settings()
    output, passed = doctor("--user", "twin")
    assert not passed
    assert "2 directory entries match 'twin'" in output


def test_a_wrong_bind_password_is_named(settings: Any, slapd: Slapd) -> None:  # noqa: F811
    settings.PORTAL_LDAP = slapd.settings(bind_password="wrong")
    output, passed = doctor()
    assert not passed
    assert "refused the bind" in output
    assert "PORTAL_LDAP_BIND_PASSWORD" in output


def test_a_certificate_the_portal_cannot_verify_is_named(settings: Any, slapd: Slapd) -> None:  # noqa: F811
    settings.PORTAL_LDAP = slapd.settings(server_uri=slapd.ldaps_uri)
    output, passed = doctor()
    assert not passed
    assert "answers, but the TLS handshake failed" in output
    assert "PORTAL_LDAP_CA_FILE" in output


def test_ldaps_with_the_ca_file_passes(settings: Any, slapd: Slapd) -> None:  # noqa: F811
    settings.PORTAL_LDAP = slapd.settings(server_uri=slapd.ldaps_uri, ca_file=slapd.ca_file)
    output, passed = doctor("--user", "dave")
    assert passed, output
    assert "-> Admins" in output
