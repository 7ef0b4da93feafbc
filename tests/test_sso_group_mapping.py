"""The one group mapping of OpenID Connect and LDAP: names, shapes, missing groups."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.group_sync import SignInRefused, external_group_names, mapped_groups, sync_groups
from accounts.roles import ADMINS, MEMBERS
from tests.browser import free_port
from tests.ldap_server import Slapd

MAPPING = {"LLM-Users": ["Members"], "cn=ops,dc=example": ["Admins", "Team A"]}


def test_groups_map_by_exact_name_and_regardless_of_case() -> None:
    assert mapped_groups(["llm-users", "unrelated"], MAPPING) == {"Members"}
    assert mapped_groups(["CN=Ops,DC=Example"], MAPPING) == {"Admins", "Team A"}
    assert mapped_groups([], MAPPING) == set()


@pytest.mark.parametrize(
    ("claim", "names"),
    [(["a", "b"], ["a", "b"]), ("a", ["a"]), ("", []), (None, []), ({"a": 1}, []), ([1, None, "b"], ["1", "b"])],
)
def test_a_claim_of_any_shape_becomes_a_list_of_names(claim: Any, names: list[str]) -> None:
    assert external_group_names(claim) == names


@pytest.mark.django_db
def test_a_policy_group_that_does_not_exist_is_skipped_and_logged(alice: Any, caplog: Any) -> None:
    assert sync_groups(alice, ["cn=ops,dc=example"], MAPPING, "test") == {ADMINS}
    assert "'Team A', which does not exist" in caplog.text
    Group.objects.create(name="Team A")
    assert sync_groups(alice, ["cn=ops,dc=example"], MAPPING, "test") == {ADMINS, "Team A"}


@pytest.mark.django_db
def test_a_required_group_refuses_before_changing_anything(alice: Any, settings: Any) -> None:
    settings.PORTAL_SSO_REQUIRE_GROUP = True
    with pytest.raises(SignInRefused, match="none of the groups"):
        sync_groups(alice, ["unrelated"], MAPPING, "test")
    assert set(alice.groups.values_list("name", flat=True)) == {MEMBERS}


@pytest.mark.django_db
def test_doctor_names_a_mapped_group_that_does_not_exist(settings: Any) -> None:
    settings.PORTAL_OIDC = {}
    settings.PORTAL_LDAP = {**Slapd.settings_for_uri(f"ldap://127.0.0.1:{free_port()}"), "group_map": MAPPING}
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("doctor", "--sso", stdout=out)
    assert "names the portal group 'Team A', which does not exist" in out.getvalue()


def test_user_without_sso_is_refused_by_doctor() -> None:
    with pytest.raises(CommandError, match="--user goes with --sso"):
        call_command("doctor", "--user", "carol")


@pytest.mark.django_db
def test_without_a_mapping_the_portal_groups_stay_and_nobody_is_refused(adam: Any, settings: Any) -> None:
    settings.PORTAL_SSO_REQUIRE_GROUP = True
    assert sync_groups(adam, ["anything"], {}, "test") == {ADMINS}
