"""Logging in and out, MFA, sign-up, and what each role may reach."""

from __future__ import annotations

import importlib
import io
import re
from typing import Any

import pyotp
import pytest
from allauth.mfa.models import Authenticator
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from accounts.mfa_adapter import SEALED_PREFIX, seal, unseal
from accounts.roles import ADMINS, MEMBERS, assign_role
from portal.registry import registry
from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def _fresh_cache():
    # allauth keeps rate limits and used TOTP codes in the cache.
    cache.clear()


def login(client: Client, login_name: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": login_name, "password": password})


def test_alice_logs_in_with_her_username(alice):
    client = Client()
    response = login(client, "alice")
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_alice_logs_in_with_her_email(alice):
    client = Client()
    login(client, "alice@example.com")
    assert client.get("/account/").context["user"] == alice


def test_a_wrong_password_is_refused_with_a_message(alice):
    client = Client()
    response = login(client, "alice", "not her password")
    assert response.status_code == 200
    assert b"not correct" in response.content
    assert client.get("/").status_code == 302


def test_logout_ends_the_session(alice):
    client = Client()
    login(client, "alice")
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_the_login_page_has_no_inline_script(db):
    body = Client().get("/accounts/login/").content.decode()
    assert "<script>" not in body
    assert "onclick=" not in body


def test_sign_up_is_closed_by_default(db):
    assert b"Sign Up Closed" in Client().get("/accounts/signup/").content
    assert b"/accounts/signup/" not in Client().get("/accounts/login/").content
    response = Client().post(
        "/accounts/signup/",
        {"username": "eve", "email": "eve@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert not get_user_model().objects.filter(username="eve").exists()
    assert response.status_code == 200


open_sign_up = override_settings(PORTAL_SIGNUP_OPEN=True, ACCOUNT_EMAIL_VERIFICATION="mandatory")


def sign_up(username: str):
    return Client().post(
        "/accounts/signup/",
        {"username": username, "email": f"{username}@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )


@open_sign_up
def test_open_sign_up_makes_a_member_who_must_verify_the_email(db, mailoutbox):
    response = sign_up("carol")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    carol = get_user_model().objects.get(username="carol")
    assert carol.groups.filter(name=MEMBERS).exists()
    assert len(mailoutbox) == 1
    assert "carol@example.com" in mailoutbox[0].to

    client = Client()
    response = login(client, "carol")
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/").status_code == 302, "no login before the address is verified"

    link = re.search(r"http://testserver(/accounts/confirm-email/[^/\s]+/)", mailoutbox[-1].body)
    assert link, mailoutbox[-1].body
    client.post(link.group(1))
    response = login(client, "carol")
    assert response.status_code == 302
    assert client.get("/").status_code == 200


@open_sign_up
@pytest.mark.parametrize("persona", ["alice", "adam"])
def test_accounts_made_by_an_admin_log_in_without_verifying_while_sign_up_is_open(persona, request, mailoutbox):
    request.getfixturevalue(persona)
    client = Client()
    response = login(client, persona)
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert mailoutbox == []


@open_sign_up
def test_the_first_admin_without_an_email_logs_in_while_sign_up_is_open(db, capsys):
    call_command("bootstrap")
    password = re.search(r"password: (\S+)", capsys.readouterr().out)
    assert password
    client = Client()
    assert login(client, "admin", password.group(1)).status_code == 302
    # Logged in: the first page is the required password change (tests/test_required_steps.py).
    assert client.get("/admin/")["Location"] == "/accounts/password/change/"
    assert client.get("/accounts/password/change/").status_code == 200


def test_bootstrap_creates_the_first_admin_once(db, capsys):
    call_command("bootstrap")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff
    assert "password:" in capsys.readouterr().out
    call_command("bootstrap")
    assert get_user_model().objects.count() == 1
    assert capsys.readouterr().out == ""


def test_bootstrap_leaves_a_member_named_admin_alone_and_says_what_to_do(user_factory):
    member = user_factory("admin", MEMBERS)
    with pytest.raises(CommandError, match="bootstrap --username NAME"):
        call_command("bootstrap")
    member.refresh_from_db()
    assert not member.is_staff
    call_command("bootstrap", "--username", "root", stdout=io.StringIO())
    assert get_user_model().objects.get(username="root").is_superuser


def test_login_attempts_are_rate_limited(alice):
    client = Client()
    for attempt in range(6):
        login(client, "alice", f"wrong {attempt}")
    response = login(client, "alice")
    assert b"Too many failed login attempts" in response.content
    assert client.get("/").status_code == 302, "even the right password waits out the limit"


def _activate_totp(client: Client) -> str:
    # Turning MFA on asks for the password again first (allauth's reauthentication).
    page = client.get("/accounts/2fa/totp/activate/")
    assert page["Location"].startswith("/accounts/reauthenticate/")
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret: str = page.context["form"].secret
    code = pyotp.TOTP(secret).now()
    response = client.post("/accounts/2fa/totp/activate/", {"code": code})
    assert response.status_code == 302, response.content
    return secret


def test_mfa_enrolment_and_login_with_a_totp_code(alice):
    client = Client()
    login(client, "alice")
    secret = _activate_totp(client)
    assert client.get("/account/").context["mfa_enabled"] is True
    # Recovery codes are created alongside TOTP.
    assert client.get("/accounts/2fa/recovery-codes/").status_code == 200
    client.post("/accounts/logout/")
    cache.clear()

    second = Client()
    response = login(second, "alice")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert second.get("/").status_code == 302, "the password alone must not be enough"
    response = second.post("/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302
    assert second.get("/").status_code == 200


def _authenticators(user) -> dict[str, dict[str, Any]]:
    return {row.type: row.data for row in Authenticator.objects.filter(user=user)}


def _log_in_with_a_code(login_name: str, secret: str) -> Client:
    client = Client()
    assert login(client, login_name)["Location"] == "/accounts/2fa/authenticate/"
    client.post("/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()})
    return client


def test_the_totp_secret_is_stored_encrypted_and_logs_in(alice):
    client = Client()
    login(client, "alice")
    secret = _activate_totp(client)
    stored = _authenticators(alice)
    assert stored["totp"]["secret"].startswith(SEALED_PREFIX)
    assert secret not in stored["totp"]["secret"]
    seed = stored["recovery_codes"]["seed"]
    assert seed.startswith(SEALED_PREFIX)
    assert re.fullmatch(r"[0-9a-f]{80}", unseal(seed) or ""), "the seed is allauth's hex, sealed"
    cache.clear()
    assert _log_in_with_a_code("alice", secret).get("/").status_code == 200


def test_plaintext_secrets_stored_before_are_encrypted_by_the_migration_and_still_log_in(alice):
    secret = pyotp.random_base32()
    Authenticator.objects.create(user=alice, type=Authenticator.Type.TOTP, data={"secret": secret})
    seal_migration = importlib.import_module("accounts.migrations.0006_seal_mfa_secrets")
    seal_migration.seal_plaintext(django_apps, None)
    stored = _authenticators(alice)["totp"]["secret"]
    assert stored.startswith(SEALED_PREFIX)
    seal_migration.seal_plaintext(django_apps, None)
    assert _authenticators(alice)["totp"]["secret"] == stored, "sealing twice changes nothing"
    assert _log_in_with_a_code("alice", secret).get("/").status_code == 200


def test_a_secret_sealed_under_another_secret_key_refuses_every_code_without_an_error(alice, settings, caplog):
    secret = pyotp.random_base32()
    Authenticator.objects.create(user=alice, type=Authenticator.Type.TOTP, data={"secret": seal(secret)})
    settings.SECRET_KEY = "another key " * 5
    client = Client()
    login(client, "alice")
    response = client.post("/accounts/2fa/authenticate/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 200
    assert b"Incorrect code" in response.content
    assert client.get("/").status_code == 302
    assert "PORTAL_SECRET_KEY changed" in caplog.text


def test_a_wrong_totp_code_is_refused(alice):
    client = Client()
    login(client, "alice")
    _activate_totp(client)
    client.post("/accounts/logout/")
    second = Client()
    login(second, "alice")
    response = second.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert response.status_code == 200
    assert second.get("/").status_code == 302


def nav_names(client: Client) -> set[str]:
    body = client.get("/").content.decode()
    return set(re.findall(r'data-nav="([^"]+)"', body))


def test_the_admin_login_goes_through_allauth_so_mfa_applies(db):
    response = Client().get("/admin/login/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_joining_and_leaving_the_admins_group_grants_and_revokes_staff(bob):
    assert not bob.is_staff
    assign_role(bob, ADMINS)
    bob.refresh_from_db()
    assert bob.is_staff
    assert bob.is_superuser
    assign_role(bob, MEMBERS)
    bob.refresh_from_db()
    assert not bob.is_staff
    assert not bob.is_superuser


def test_the_roles_exist_after_migrating(db):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"Members", "Auditors", "Admins"}


# Each persona, each page: "ok" is the page itself, "forbidden" a 403, "login" the login page.
PAGES = {
    "/": {"member": "ok", "auditor": "ok", "admin": "ok", "anonymous": "login"},
    "/account/": {"member": "ok", "auditor": "ok", "admin": "ok", "anonymous": "login"},
    "/usage/": {"member": "ok", "auditor": "ok", "admin": "ok", "anonymous": "login"},
    "/admin/accounts/dailyusage/report/": {
        "member": "forbidden",
        "auditor": "forbidden",
        "admin": "ok",
        "anonymous": "login",
    },
    "/chat/": {"member": "ok", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/chat/api/conversations/": {"member": "ok", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/engines/": {"member": "forbidden", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/engines/status.json": {"member": "forbidden", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/admin/": {"member": "forbidden", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/plugins/": {"member": "forbidden", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/admin/auth/user/": {"member": "forbidden", "auditor": "forbidden", "admin": "ok", "anonymous": "login"},
    "/audit/": {"member": "forbidden", "auditor": "ok", "admin": "ok", "anonymous": "login"},
}
PERSONAS = {"alice": "member", "bob": "member", "audrey": "auditor", "adam": "admin", "anonymous": "anonymous"}
NAV = {
    "member": {"home", "chat:index", "usage:page", "account"},
    "auditor": {"home", "usage:page", "audit:events", "account"},
    "admin": {
        "home",
        "chat:index",
        "usage:page",
        "inference:engines",
        "audit:events",
        "account",
        "admin:index",
        "plugins",
    },
    "anonymous": set(),
}


def outcome(client: Client, path: str) -> str:
    response = client.get(path, follow=True)
    if response.status_code == 403:
        return "forbidden"
    assert response.status_code == 200, (path, response.status_code)
    if response.request["PATH_INFO"] == "/accounts/login/":
        return "login"
    assert response.request["PATH_INFO"] == path, response.redirect_chain
    return "ok"


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("path", PAGES)
def test_each_role_reaches_exactly_its_pages(persona, path, request, client_for):
    role = PERSONAS[persona]
    client = Client() if persona == "anonymous" else client_for(request.getfixturevalue(persona))
    assert outcome(client, path) == PAGES[path][role]


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_navigation_shows_exactly_the_pages_of_the_role(persona, request, client_for, db):
    role = PERSONAS[persona]
    client = Client() if persona == "anonymous" else client_for(request.getfixturevalue(persona))
    # Plugins' own items (named "<slug>:...") are theirs to test; these are the portal's.
    portal_items = {name for name in nav_names(client) if name.split(":")[0] not in registry["plugins"]}
    assert portal_items == NAV[role]


def test_the_role_gate_refuses_a_user_without_the_role_and_passes_one_with_it(alice, audrey, rf):
    from django.core.exceptions import PermissionDenied
    from django.http import HttpResponse

    from accounts.gates import role_required

    @role_required("auditor")
    def audit_page(request):
        return HttpResponse("audit")

    request = rf.get("/")
    request.user = audrey
    assert audit_page(request).content == b"audit"
    request.user = alice
    with pytest.raises(PermissionDenied, match="auditor role"):
        audit_page(request)


def test_a_gate_for_an_unknown_role_fails_when_the_module_loads():
    from accounts.gates import role_required

    with pytest.raises(KeyError):
        role_required("superhero")
