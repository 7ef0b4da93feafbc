"""Sign-in through a real slapd: the group mapping, and each failure with its sentence."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.roles import ADMINS, MEMBERS
from tests.browser import free_port
from tests.ldap_server import USER_PASSWORD, Slapd, slapd  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

LDAP_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "accounts.ldap_backend.PortalLDAPBackend",
]


@pytest.fixture
def directory(settings: Any, slapd: Slapd) -> Slapd:  # noqa: F811
    settings.PORTAL_LDAP = slapd.settings()
    settings.AUTHENTICATION_BACKENDS = LDAP_BACKENDS
    return slapd


def sign_in(username: str, password: str = USER_PASSWORD) -> tuple[Client, Any]:
    client = Client()
    response = client.post("/accounts/login/", {"login": username, "password": password})
    return client, response


def groups_of(username: str) -> set[str]:
    user = get_user_model().objects.get(username=username)
    return set(user.groups.values_list("name", flat=True))


def test_a_directory_user_in_a_nested_group_signs_in_as_a_member(directory: Slapd) -> None:
    client, response = sign_in("carol")
    assert response.status_code == 302, response.content.decode()[:2000]
    assert groups_of("carol") == {MEMBERS}
    user = get_user_model().objects.get(username="carol")
    assert (user.email, user.first_name) == ("carol@example.org", "Carol")
    assert client.get("/account/").status_code == 200


def test_the_directory_admins_group_makes_an_admin(directory: Slapd) -> None:
    _, response = sign_in("dave")
    assert response.status_code == 302
    dave = get_user_model().objects.get(username="dave")
    assert groups_of("dave") == {ADMINS}
    assert dave.is_staff
    assert dave.is_superuser


def test_without_nesting_the_inner_group_maps_to_nothing(directory: Slapd, settings: Any) -> None:
    settings.PORTAL_LDAP = directory.settings(group_type="groupOfNames")
    sign_in("carol")
    assert groups_of("carol") == set()


def test_replace_removes_a_portal_group_the_directory_no_longer_gives(directory: Slapd, user_factory: Any) -> None:
    user_factory("carol", ADMINS)
    sign_in("carol")
    assert groups_of("carol") == {MEMBERS}


def test_add_keeps_the_portal_groups(directory: Slapd, settings: Any, user_factory: Any) -> None:
    settings.PORTAL_SSO_GROUP_SYNC = "add"
    user_factory("carol", ADMINS)
    sign_in("carol")
    assert groups_of("carol") == {MEMBERS, ADMINS}


def test_a_wrong_password_is_the_usual_refusal(directory: Slapd) -> None:
    _, response = sign_in("carol", "not the password")
    assert response.status_code == 200
    assert "username and/or password you specified are not correct" in response.content.decode()


def test_an_ambiguous_user_is_refused_with_a_sentence(directory: Slapd, caplog: Any) -> None:
    _, response = sign_in("twin")
    page = response.content.decode()
    assert response.status_code == 200
    assert "More than one directory entry matches this user name" in page
    assert not get_user_model().objects.filter(username="twin").exists()
    assert "2 entries match 'twin'" in caplog.text


def test_an_unreachable_server_is_named_on_the_page(directory: Slapd, settings: Any, caplog: Any) -> None:
    settings.PORTAL_LDAP = directory.settings(server_uri=f"ldap://127.0.0.1:{free_port()}")
    _, response = sign_in("carol")
    assert response.status_code == 200
    assert "The company directory did not answer" in response.content.decode()
    assert "SERVER_DOWN" in caplog.text


def test_without_a_mapped_group_a_required_group_refuses_and_deactivates(
    directory: Slapd, settings: Any, user_factory: Any
) -> None:
    settings.PORTAL_SSO_REQUIRE_GROUP = True
    erin = user_factory("erin", MEMBERS)
    _, response = sign_in("erin")
    assert "no group that gives access to this portal" in response.content.decode()
    erin.refresh_from_db()
    assert not erin.is_active


def test_no_new_accounts_when_creation_is_off(directory: Slapd, settings: Any) -> None:
    settings.PORTAL_SSO_CREATE_USERS = False
    _, response = sign_in("carol")
    assert "There is no portal account for carol" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_starttls_with_the_ca_file_signs_in(directory: Slapd, settings: Any) -> None:
    settings.PORTAL_LDAP = directory.settings(start_tls=True, ca_file=directory.ca_file)
    _, response = sign_in("carol")
    assert response.status_code == 302
    assert groups_of("carol") == {MEMBERS}


def test_ldaps_with_the_ca_file_signs_in(directory: Slapd, settings: Any) -> None:
    settings.PORTAL_LDAP = directory.settings(server_uri=directory.ldaps_uri, ca_file=directory.ca_file)
    _, response = sign_in("dave")
    assert response.status_code == 302


def test_ldaps_with_a_certificate_nobody_vouches_for_is_refused(directory: Slapd, settings: Any, caplog: Any) -> None:
    settings.PORTAL_LDAP = directory.settings(server_uri=directory.ldaps_uri)
    _, response = sign_in("dave")
    assert "The company directory did not answer" in response.content.decode()
    assert "sign-in of 'dave' failed: ldap search_for_user_dn: SERVER_DOWN" in caplog.text
    assert not get_user_model().objects.filter(username="dave").exists()


def test_a_refusal_is_one_audit_event_with_its_reason(directory: Slapd) -> None:
    from portal.audit.models import Event

    sign_in("twin")
    (event,) = Event.objects.filter(action="auth.login_failed", target="twin")
    assert event.outcome == "refused"
    assert "2 entries match 'twin'" in event.data
