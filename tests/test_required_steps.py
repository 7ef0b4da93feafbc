"""Steps before any page: the first admin replaces the printed password; admins turn on MFA when required."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from accounts.models import PasswordChangeRequired
from tests.test_accounts import _activate_totp, login

NEW_PASSWORD = "a much longer passphrase of mine"
CHANGE_PASSWORD = "/accounts/password/change/"
ACTIVATE_MFA = "/accounts/2fa/totp/activate/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # allauth keeps rate limits, reauthentication marks and used TOTP codes in the cache.
    cache.clear()


@pytest.fixture
def mfa_required(settings):
    settings.PORTAL_ADMIN_MFA_REQUIRED = True
    return settings


def test_the_first_admin_must_replace_the_printed_password_before_anything_else(db, capsys):
    call_command("bootstrap")
    printed = re.search(r"password: (\S+)", capsys.readouterr().out)
    assert printed
    client = Client()
    assert login(client, "admin", printed.group(1)).status_code == 302
    for page in ("/", "/admin/", "/admin/auth/user/", "/account/"):
        response = client.get(page)
        assert (response.status_code, response["Location"]) == (302, CHANGE_PASSWORD), page
    # An action is refused too, not only pages: no user is made.
    client.post("/admin/auth/user/add/", {"username": "eve", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert not get_user_model().objects.filter(username="eve").exists()
    assert b"Choose a new password" in client.get("/", follow=True).content

    response = client.post(
        CHANGE_PASSWORD, {"oldpassword": printed.group(1), "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert not PasswordChangeRequired.objects.exists()
    assert client.get("/admin/").status_code == 200
    assert login(Client(), "admin", printed.group(1)).status_code == 200, "the printed password no longer works"


def test_an_admin_made_otherwise_is_not_asked_for_a_new_password(adam, client_for):
    assert client_for(adam).get("/admin/").status_code == 200


def test_an_admin_without_mfa_is_sent_to_turn_it_on_and_cannot_reach_the_admin(adam, mfa_required):
    client = Client()
    login(client, "adam")
    for page in ("/admin/", "/admin/auth/user/", "/", "/engines/"):
        response = client.get(page)
        assert (response.status_code, response["Location"]) == (302, ACTIVATE_MFA), page
    assert b"Admins must turn on two-factor authentication" in client.get("/", follow=True).content
    client.post("/admin/auth/user/add/", {"username": "eve", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert not get_user_model().objects.filter(username="eve").exists()

    _activate_totp(client)
    assert client.get("/admin/").status_code == 200
    assert client.get("/").status_code == 200


def test_members_and_auditors_are_not_asked_for_mfa(alice, audrey, client_for, mfa_required):
    assert client_for(alice).get("/").status_code == 200
    assert client_for(audrey).get("/").status_code == 200


def test_admins_may_skip_mfa_where_it_is_not_required(adam, client_for, settings):
    settings.PORTAL_ADMIN_MFA_REQUIRED = False
    assert client_for(adam).get("/admin/").status_code == 200
