"""What is recorded, with actor, IP and target: sign-in, MFA, passwords, roles, engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.roles import AUDITORS, MEMBERS, assign_role
from inference import desired_state
from inference.models import EngineConfig
from inference.supervisor import Supervisor
from portal.audit.models import Event
from tests.conftest import PASSWORD
from tests.test_accounts import _activate_totp, login
from tests.test_engine_supervisor import (  # noqa: F401 - fixtures
    FakeProcess,
    State,
    boss,
    engine_config,
    fake_engines,
    healthy,
    tick_until,
)

pytestmark = pytest.mark.django_db


def actions(*names: str) -> list[tuple[str, str, str, str]]:
    events = Event.objects.filter(action__in=names).order_by("seq")
    return [(event.action, event.actor_name, event.target, event.outcome) for event in events]


def test_a_login_a_failed_login_and_a_logout_are_recorded_with_the_ip(alice: Any) -> None:
    cache.clear()
    client = Client(REMOTE_ADDR="198.51.100.7")
    login(client, "alice", "not her password")
    login(client, "alice")
    client.post("/accounts/logout/")
    assert actions("auth.login", "auth.login_failed", "auth.logout") == [
        ("auth.login_failed", "", "alice", "refused"),
        ("auth.login", "alice", "alice", "ok"),
        ("auth.logout", "alice", "alice", "ok"),
    ]
    assert set(Event.objects.filter(action__startswith="auth.").values_list("ip", flat=True)) == {"198.51.100.7"}
    failed = Event.objects.get(action="auth.login_failed")
    assert "not her password" not in failed.data


def test_mfa_enabled_and_removed_are_recorded(alice: Any, django_capture_on_commit_callbacks: Any) -> None:
    client = Client()
    login(client, "alice")
    with django_capture_on_commit_callbacks(execute=True):  # allauth signals after its commit
        _activate_totp(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/2fa/totp/deactivate/")
    assert response.status_code == 302
    recorded = actions("auth.mfa_added", "auth.mfa_removed")
    assert ("auth.mfa_added", "alice", "alice", "ok") in recorded
    assert recorded[-1][:2] == ("auth.mfa_removed", "alice")


def test_a_password_change_is_recorded_without_the_password(alice: Any) -> None:
    client = Client()
    login(client, "alice")
    new = "a brand new passphrase 77"
    response = client.post("/accounts/password/change/", {"oldpassword": PASSWORD, "password1": new, "password2": new})
    assert response.status_code == 302
    assert actions("auth.password_changed") == [("auth.password_changed", "alice", "alice", "ok")]
    assert new not in Event.objects.get(action="auth.password_changed").data


def test_role_changes_and_deactivation_name_the_admin_who_made_them(
    adam: Any, bob: Any, client_for: Callable[[Any], Client]
) -> None:
    client = client_for(adam)
    from django.contrib.auth.models import Group

    auditors = Group.objects.get(name=AUDITORS)
    response = client.post(
        f"/admin/auth/user/{bob.pk}/change/",
        {
            "username": "bob", "email": "bob@example.com", "is_active": "",
            "groups": [auditors.pk], "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.content
    recorded = actions("user.role_added", "user.role_removed", "user.deactivated")
    assert ("user.deactivated", "adam", "bob", "ok") in recorded
    assert ("user.role_added", "adam", "bob", "ok") in recorded
    assert ("user.role_removed", "adam", "bob", "ok") in recorded
    added = Event.objects.filter(action="user.role_added", target="bob").latest("seq")
    assert added.details == {"groups": [AUDITORS]}


def test_a_role_change_outside_a_request_is_the_systems(bob: Any) -> None:
    assign_role(bob, MEMBERS)  # no change
    assign_role(bob, AUDITORS)
    last = Event.objects.filter(action="user.role_added").latest("seq")
    assert (last.actor_name, last.target, last.details) == ("", "bob", {"groups": [AUDITORS]})


def test_an_engine_config_change_keeps_only_what_changed_before_and_after(
    adam: Any, client_for: Callable[[Any], Client]
) -> None:
    config = engine_config()
    config.max_num_seqs = 4
    config.save()
    desired_state.stop_engine(config)
    changed = Event.objects.filter(action="engine.config_changed").order_by("seq")
    assert [event.details for event in changed] == [
        {"before": {"max_num_seqs": 16}, "after": {"max_num_seqs": 4}},
        {"before": {"desired_state": "running"}, "after": {"desired_state": "stopped"}},
    ]
    assert Event.objects.filter(action="engine.config_created", target=config.name).exists()


def test_the_supervisor_records_start_crash_restart_and_stop(request: pytest.FixtureRequest, adam: Any) -> None:
    # The supervisor tests' fixtures: a real Supervisor over fake engine processes.
    supervisor: Supervisor = request.getfixturevalue("boss")
    processes: type[FakeProcess] = request.getfixturevalue("fake_engines")
    config = engine_config()
    tick_until(supervisor, config, lambda state: state.state == State.READY, "ready")
    processes.launches[-1].exit_code = 1
    tick_until(supervisor, config, lambda state: state.state == State.CRASHED, "the crash")
    tick_until(supervisor, config, lambda state: state.state == State.READY, "ready again")
    desired_state.restart_engine(EngineConfig.objects.get(pk=config.pk))
    tick_until(supervisor, config, lambda state: len(processes.launches) == 3, "the restart")
    desired_state.stop_engine(EngineConfig.objects.get(pk=config.pk))
    tick_until(supervisor, config, lambda state: state.state == State.STOPPED, "stopped")
    engine_events = [
        (event.action, event.outcome) for event in Event.objects.filter(action__in=[
            "engine.started", "engine.crashed", "engine.restarted", "engine.stopped"]).order_by("seq")
    ]  # fmt: skip
    assert engine_events == [
        ("engine.started", "ok"),
        ("engine.crashed", "crashed"),
        ("engine.started", "ok"),
        ("engine.restarted", "ok"),
        ("engine.started", "ok"),
        ("engine.stopped", "ok"),
    ]
