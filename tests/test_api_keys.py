"""Personal API keys: the service, the member's pages, the admin and the `apikey` command."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from accounts import api_keys
from accounts.api_keys import ApiKeyInvalid, ApiKeyRefused
from accounts.models import ApiKey
from tests.chat_stub_engine import register

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


def refusal(header: str | None) -> str:
    with pytest.raises(ApiKeyRefused) as caught:
        api_keys.authenticate(header)
    return caught.value.code


# --- the service ---------------------------------------------------------------------------


def test_a_new_key_authenticates_and_only_its_hash_is_stored(alice: Any) -> None:
    key, secret = api_keys.create_key(alice, "laptop")
    assert secret.startswith(key.prefix + "_")
    stored = ApiKey.objects.get(pk=key.pk)
    assert secret not in {stored.secret_hash, stored.prefix, stored.name}
    assert len(stored.secret_hash) == 64
    assert api_keys.authenticate(bearer(secret)).owner == alice


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_unknown(alice: Any) -> None:
    _, secret = api_keys.create_key(alice, "laptop")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert refusal(bearer(forged)) == "invalid_key"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_key"),
        ("", "missing_key"),
        ("Basic dXNlcjpwYXNz", "malformed_header"),
        ("Bearer", "malformed_header"),
        ("Bearer    ", "malformed_header"),
        ("Token lp_00000000_" + "a" * 43, "malformed_header"),
        ("Bearer sk-not-a-portal-key", "invalid_key"),
        ("Bearer lp_00000000_" + "a" * 43, "invalid_key"),
    ],
)
def test_a_key_in_the_wrong_header_format_is_refused_with_the_reason(header: str | None, code: str) -> None:
    assert refusal(header) == code


def test_a_revoked_key_is_refused_at_once(alice: Any) -> None:
    key, secret = api_keys.create_key(alice, "laptop")
    assert api_keys.revoke(key) is True
    assert api_keys.revoke(key) is False
    assert refusal(bearer(secret)) == "revoked_key"


def test_an_expired_key_is_refused(alice: Any) -> None:
    key, secret = api_keys.create_key(alice, "laptop", expires_in_days=1)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert refusal(bearer(secret)) == "expired_key"


def test_the_key_of_a_deactivated_owner_is_refused(alice: Any) -> None:
    _, secret = api_keys.create_key(alice, "laptop")
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert refusal(bearer(secret)) == "inactive_owner"


def test_the_key_of_an_owner_who_lost_the_member_role_is_refused(alice: Any) -> None:
    _, secret = api_keys.create_key(alice, "laptop")
    alice.groups.clear()
    assert refusal(bearer(secret)) == "not_member"


def test_last_used_is_written_at_most_once_a_minute(alice: Any) -> None:
    key, secret = api_keys.create_key(alice, "laptop")
    api_keys.authenticate(bearer(secret))
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    api_keys.authenticate(bearer(secret))
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(seconds=61))
    api_keys.authenticate(bearer(secret))
    later = ApiKey.objects.get(pk=key.pk).last_used_at
    assert later is not None
    assert later > first


def test_keys_made_before_a_secret_key_rotation_work_while_the_old_key_is_a_fallback(alice: Any) -> None:
    _, secret = api_keys.create_key(alice, "laptop")
    with override_settings(SECRET_KEY="rotated-" + "x" * 50, SECRET_KEY_FALLBACKS=[]):
        assert refusal(bearer(secret)) == "invalid_key"
    from django.conf import settings

    with override_settings(SECRET_KEY="rotated-" + "x" * 50, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert api_keys.authenticate(bearer(secret)).owner == alice


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires"),
        ({"name": "ok", "expires_in_days": 99999}, "expires"),
        ({"name": "ok", "models": ["no-such-model"]}, "models"),
    ],
)
def test_a_key_with_bad_settings_is_refused_and_nothing_is_saved(
    alice: Any, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiKeyInvalid) as caught:
        api_keys.create_key(alice, **kwargs)
    assert caught.value.field == field
    assert not ApiKey.objects.exists()


def test_a_user_without_the_member_role_cannot_get_a_key(user_factory: Any) -> None:
    mallory = user_factory("mallory", None)
    with pytest.raises(ApiKeyInvalid):
        api_keys.create_key(mallory, "laptop")


def test_a_key_may_be_limited_to_served_models(alice: Any) -> None:
    register("http://127.0.0.1:9")
    key, _ = api_keys.create_key(alice, "laptop", models=["stub-model"])
    assert key.model_names == ["stub-model"]
    assert api_keys.allows_model(key, "stub-model")
    assert not api_keys.allows_model(key, "other")


# --- the member's pages --------------------------------------------------------------------


def test_a_member_creates_a_key_sees_the_secret_once_and_then_only_its_prefix(alice: Any, client_for: Any) -> None:
    client = client_for(alice)
    response = client.post("/account/keys/", {"name": "notebook", "expires": "30"})
    assert response.status_code == 200
    key = ApiKey.objects.get(owner=alice)
    secret = response.context["secret"]
    assert secret.startswith(key.prefix)
    assert secret in response.content.decode()
    assert key.expires_at is not None
    listing = client.get("/account/keys/").content.decode()
    assert key.prefix in listing
    assert "notebook" in listing
    assert secret not in listing


def test_a_member_revokes_their_key_from_the_page(alice: Any, client_for: Any) -> None:
    key, secret = api_keys.create_key(alice, "laptop")
    response = client_for(alice).post(f"/account/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    assert refusal(bearer(secret)) == "revoked_key"


def test_a_member_cannot_see_or_revoke_someone_elses_key(alice: Any, bob: Any, client_for: Any) -> None:
    key, secret = api_keys.create_key(bob, "bobs")
    assert key.prefix not in client_for(alice).get("/account/keys/").content.decode()
    assert client_for(alice).post(f"/account/keys/{key.pk}/revoke/").status_code == 404
    assert api_keys.authenticate(bearer(secret)).owner == bob


def test_a_bad_key_form_is_refused_and_saves_nothing(alice: Any, client_for: Any) -> None:
    client = client_for(alice)
    assert client.post("/account/keys/", {"name": "", "expires": "0"}).status_code == 400
    assert client.post("/account/keys/", {"name": "x", "models": ["no-such-model"]}).status_code == 400
    assert not ApiKey.objects.exists()


def test_someone_without_the_member_role_has_no_key_page(user_factory: Any, client_for: Any) -> None:
    mallory = user_factory("mallory", None)
    assert client_for(mallory).get("/account/keys/").status_code == 403


def test_an_admin_lists_and_revokes_anyones_keys(alice: Any, adam: Any, client_for: Any) -> None:
    key, secret = api_keys.create_key(alice, "laptop")
    client = client_for(adam)
    assert key.prefix in client.get("/admin/accounts/apikey/").content.decode()
    response = client.post(
        "/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [str(key.pk)]}, follow=True
    )
    assert response.status_code == 200
    assert refusal(bearer(secret)) == "revoked_key"


# --- the command ---------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("apikey", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_command_creates_a_key_prints_it_once_lists_and_revokes_it(alice: Any) -> None:
    secret = run("create", "alice", "--name", "ci job", "--expires", "7").strip()
    key = api_keys.authenticate(bearer(secret))
    assert key.name == "ci job"
    assert key.expires_at is not None
    listing = run("list", "alice")
    assert key.prefix in listing
    assert secret not in listing
    assert "active" in listing
    assert "Revoked" in run("revoke", key.prefix)
    assert "already revoked" in run("revoke", key.prefix)
    assert refusal(bearer(secret)) == "revoked_key"


@pytest.mark.parametrize(
    "args",
    [
        ("create", "nobody", "--name", "x"),
        ("create", "alice", "--name", ""),
        ("create", "alice", "--name", "x", "--expires", "0"),
        ("create", "alice", "--name", "x", "--models", "no-such-model"),
        ("revoke", "not-a-prefix"),
        ("revoke", "lp_00000000"),
        ("list", "nobody"),
    ],
)
def test_the_command_refuses_bad_input_with_a_message(alice: Any, args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        run(*args)
    assert not ApiKey.objects.exists()


def test_a_member_limits_a_new_key_to_a_served_model_on_the_page(alice: Any, client_for: Any) -> None:
    register("http://127.0.0.1:9")
    client = client_for(alice)
    assert "stub-model" in client.get("/account/keys/").content.decode()
    assert client.post("/account/keys/", {"name": "only stub", "models": ["stub-model"]}).status_code == 200
    assert ApiKey.objects.get(owner=alice).model_names == ["stub-model"]


def test_the_account_page_links_to_the_api_keys(alice: Any, client_for: Any) -> None:
    assert 'href="/account/keys/"' in client_for(alice).get("/account/").content.decode()
