"""Company sign-in settings: PORTAL_OIDC_*, PORTAL_LDAP_*, PORTAL_SSO_* and local login, parsed strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.conftest import PASSWORD
from tests.test_settings import run_manage, settings_under

COMPANY = {
    "PORTAL_OIDC_PROVIDERS": "company",
    "PORTAL_OIDC_COMPANY_SERVER_URL": "https://id.example.com/realms/staff",
    "PORTAL_OIDC_COMPANY_CLIENT_ID": "portal",
    "PORTAL_OIDC_COMPANY_CLIENT_SECRET": "s3cret",
}
LDAP = {"PORTAL_LDAP_SERVER_URI": "ldaps://ldap.example.com", "PORTAL_LDAP_USER_SEARCH_BASE": "ou=people,dc=example"}


def test_a_provider_becomes_an_allauth_app_and_a_form_action_origin(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    environ = {
        **COMPANY,
        "PORTAL_OIDC_COMPANY_NAME": "Staff login",
        "PORTAL_OIDC_COMPANY_GROUP_MAP": '{"g": ["Members", "Team A"]}',
    }
    del environ["PORTAL_OIDC_COMPANY_CLIENT_SECRET"]
    loaded = settings_under(tmp_path, **environ, PORTAL_OIDC_COMPANY_CLIENT_SECRET_FILE=str(secret_file))
    (app,) = loaded["SOCIALACCOUNT_PROVIDERS"]["openid_connect"]["APPS"]
    assert (app["provider_id"], app["name"], app["secret"]) == ("company", "Staff login", "from-a-file")
    assert app["settings"]["server_url"] == "https://id.example.com/realms/staff"
    assert "form-action 'self' https://id.example.com;" in loaded["PORTAL_CSP"]


def test_ldap_adds_its_backend_and_local_login_off_keeps_only_the_break_glass_one(tmp_path: Path) -> None:
    loaded = settings_under(tmp_path, **LDAP, PORTAL_LOCAL_LOGIN="false", PORTAL_LOCAL_LOGIN_USERS="adam")
    assert loaded["AUTHENTICATION_BACKENDS"] == [
        "accounts.backends.LocalPasswordBackend",
        "accounts.ldap_backend.PortalLDAPBackend",
    ]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({**COMPANY, "PORTAL_OIDC_PROVIDERS": "Company_1"}, "not a provider id"),
        ({**COMPANY, "PORTAL_OIDC_COMPANY_CLIENT_SECRET": ""}, "PORTAL_OIDC_COMPANY_CLIENT_SECRET"),
        ({**COMPANY, "PORTAL_OIDC_COMPANY_SERVER_URL": "id.example.com"}, "PORTAL_OIDC_COMPANY_SERVER_URL"),
        (
            {**COMPANY, "PORTAL_OIDC_COMPANY_GROUP_MAP": "{g: Members}"},
            "PORTAL_OIDC_COMPANY_GROUP_MAP is not valid JSON",
        ),
        ({**COMPANY, "PORTAL_OIDC_COMPANY_GROUP_MAP": '["Members"]'}, "must be a JSON object"),
        ({**COMPANY, "PORTAL_OIDC_COMPANY_GROUP_MAP": '{"g": 7}'}, "portal group name or a list"),
        ({**LDAP, "PORTAL_LDAP_USER_DN_TEMPLATE": "uid=%(user)s,dc=x"}, "exactly one of"),
        ({"PORTAL_LDAP_SERVER_URI": "ldap://x"}, "exactly one of"),
        ({**LDAP, "PORTAL_LDAP_USER_FILTER": "(uid=carol)"}, "must contain %(user)s"),
        ({**LDAP, "PORTAL_LDAP_START_TLS": "true"}, "use one of the two"),
        ({**LDAP, "PORTAL_LDAP_GROUP_TYPE": "openldap"}, "PORTAL_LDAP_GROUP_TYPE"),
        ({"PORTAL_LDAP_SERVER_URI": "http://ldap"}, "PORTAL_LDAP_SERVER_URI must start with"),
        ({"PORTAL_LOCAL_LOGIN": "false"}, "nobody could sign in"),
        ({"PORTAL_SSO_GROUP_SYNC": "merge"}, "PORTAL_SSO_GROUP_SYNC"),
    ],
)
def test_a_bad_sign_in_setting_stops_start_up_with_a_sentence(
    tmp_path: Path, environ: dict[str, str], named: str
) -> None:
    result = run_manage("check", tmp_path=tmp_path, **environ)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


@pytest.fixture
def local_login_off(settings: Any) -> None:
    settings.PORTAL_LOCAL_LOGIN = False
    settings.PORTAL_LOCAL_LOGIN_USERS = ["adam"]
    settings.PORTAL_OIDC = {"company": {"name": "Company"}}
    settings.AUTHENTICATION_BACKENDS = ["accounts.backends.LocalPasswordBackend"]
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": "company",
                    "name": "Company",
                    "client_id": "portal",
                    "secret": "x",
                    "settings": {"server_url": "https://id.example.com"},
                }
            ]
        }
    }


@pytest.mark.django_db
def test_with_local_login_off_the_page_shows_only_the_provider_and_the_break_glass_link(local_login_off: None) -> None:
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Company" in page
    assert 'name="password"' not in page
    assert "?local=1" in page
    assert 'name="password"' in Client().get("/accounts/login/?local=1").content.decode()


@pytest.mark.django_db
def test_with_local_login_off_only_a_break_glass_user_signs_in_with_a_password(
    local_login_off: None, alice: Any, adam: Any
) -> None:
    refused = Client().post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert refused.status_code == 200
    assert "not correct" in refused.content.decode()
    admitted = Client().post("/accounts/login/", {"login": "adam", "password": PASSWORD})
    assert admitted.status_code == 302
