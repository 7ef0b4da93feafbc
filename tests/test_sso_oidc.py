"""OpenID Connect sign-in against the real oidc-provider, driven without a browser."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.roles import ADMINS, AUDITORS, MEMBERS
from tests.oidc_server import OidcProvider, oidc_provider, sign_in_through  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

CAROL = {"email": "carol@example.org", "email_verified": True, "preferred_username": "carol"}


@pytest.fixture
def company(settings: Any, oidc_provider: OidcProvider) -> OidcProvider:  # noqa: F811
    settings.PORTAL_OIDC = oidc_provider.settings_for()
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": "company",
                    "name": "Company",
                    "client_id": "portal",
                    "secret": oidc_provider.settings_for()["company"]["secret"],
                    "settings": {
                        "server_url": oidc_provider.issuer,
                        "oauth_pkce_enabled": True,
                        "scope": ["openid", "profile", "email", "groups"],
                    },
                }
            ]
        }
    }
    return oidc_provider


def groups_of(user: Any) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_the_login_page_offers_the_provider(company: OidcProvider) -> None:
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Company" in page
    assert 'name="password"' in page


def test_a_first_sign_in_creates_the_account_with_the_mapped_role(company: OidcProvider) -> None:
    company.set_claims("carol", {**CAROL, "groups": ["portal-admins", "unrelated"]})
    client = Client()
    response = sign_in_through(company, client, "carol")
    assert response.status_code == 302
    assert response["Location"] == "/"
    carol = get_user_model().objects.get(username="carol")
    assert groups_of(carol) == {ADMINS}
    assert carol.is_superuser
    assert client.get("/account/").status_code == 200


def test_a_verified_address_signs_in_to_the_existing_account(company: OidcProvider, alice: Any) -> None:
    company.set_claims(
        "alice-at-company", {"email": "alice@example.com", "email_verified": True, "groups": "portal-auditors"}
    )
    sign_in_through(company, Client(), "alice-at-company")
    assert get_user_model().objects.filter(email="alice@example.com").count() == 1
    alice.refresh_from_db()
    assert groups_of(alice) == {AUDITORS}


def test_a_claim_without_groups_leaves_no_role_when_replacing(company: OidcProvider, alice: Any) -> None:
    company.set_claims("alice", {"email": "alice@example.com", "email_verified": True})
    sign_in_through(company, Client(), "alice")
    alice.refresh_from_db()
    assert groups_of(alice) == set()


def test_add_mode_keeps_the_local_role(company: OidcProvider, alice: Any, settings: Any) -> None:
    settings.PORTAL_SSO_GROUP_SYNC = "add"
    company.set_claims("alice", {"email": "alice@example.com", "email_verified": True, "groups": ["portal-auditors"]})
    sign_in_through(company, Client(), "alice")
    alice.refresh_from_db()
    assert groups_of(alice) == {MEMBERS, AUDITORS}


def test_a_required_group_refuses_a_newcomer_with_a_sentence(company: OidcProvider, settings: Any) -> None:
    settings.PORTAL_SSO_REQUIRE_GROUP = True
    company.set_claims("carol", {**CAROL, "groups": ["unrelated"]})
    response = sign_in_through(company, Client(), "carol")
    assert response.status_code == 403
    assert "no group that gives access to this portal" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_a_required_group_deactivates_and_logs_out_someone_who_lost_it(
    company: OidcProvider, settings: Any, alice: Any, client_for: Any
) -> None:
    settings.PORTAL_SSO_REQUIRE_GROUP = True
    elsewhere = client_for(alice)  # another browser where alice is signed in
    assert elsewhere.get("/account/").status_code == 200
    company.set_claims("alice", {"email": "alice@example.com", "email_verified": True, "groups": []})
    response = sign_in_through(company, Client(), "alice")
    assert response.status_code == 403
    alice.refresh_from_db()
    assert not alice.is_active
    assert elsewhere.get("/account/").status_code == 302  # back to the login page
    # (that the session rows are deleted and sockets closed: tests/test_sso_deprovision.py)


def test_a_refused_sign_in_stops_the_api_keys_at_once(company: OidcProvider, settings: Any, alice: Any) -> None:
    from accounts import api_keys

    _, secret = api_keys.create_key(alice, "laptop")
    api = Client()
    assert api.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    settings.PORTAL_SSO_REQUIRE_GROUP = True
    company.set_claims("alice", {"email": "alice@example.com", "email_verified": True, "groups": ["unrelated"]})
    sign_in_through(company, Client(), "alice")
    refused = api.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert refused.status_code in (401, 403)
    assert "deactivated" in refused.content.decode()


def test_losing_the_members_group_at_the_provider_stops_the_api_keys(company: OidcProvider, alice: Any) -> None:
    from accounts import api_keys

    _, secret = api_keys.create_key(alice, "laptop")
    company.set_claims("alice", {"email": "alice@example.com", "email_verified": True, "groups": ["portal-auditors"]})
    sign_in_through(company, Client(), "alice")
    refused = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert refused.status_code == 403
    assert "may no longer use the API" in refused.content.decode()


def test_no_account_is_made_when_creation_is_off(company: OidcProvider, settings: Any) -> None:
    settings.PORTAL_SSO_CREATE_USERS = False
    company.set_claims("carol", {**CAROL, "groups": ["portal-users"]})
    response = sign_in_through(company, Client(), "carol")
    assert response.status_code == 403
    assert "There is no portal account for carol@example.org" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_a_provider_error_is_a_sentence_and_a_log_line(company: OidcProvider, caplog: Any) -> None:
    client = Client()
    client.post("/accounts/oidc/company/login/", {"process": "login"})
    response = client.get("/accounts/oidc/company/login/callback/?error=access_denied&state=forged")
    page = response.content.decode()
    assert response.status_code == 403
    assert "did not work" in page
    assert "Traceback" not in page
    assert "sign-in of 'company' failed" in caplog.text


def test_a_refused_sign_in_is_in_the_audit_trail_with_its_reason(company: OidcProvider, settings: Any) -> None:
    from portal.audit.models import Event

    settings.PORTAL_SSO_REQUIRE_GROUP = True
    company.set_claims("carol", {**CAROL, "groups": ["unrelated"]})
    sign_in_through(company, Client(), "carol")
    event = Event.objects.get(action="auth.login_failed", target="carol@example.org")
    assert event.outcome == "refused"
    assert "none of the groups ['unrelated'] is mapped" in event.data
