"""Shared fixtures: the cast of personas and clients logged in as them.

alice and bob are members, audrey is an auditor, adam is an admin, and mallory has no role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.roles import ADMINS, AUDITORS, MEMBERS, assign_role

pytest_plugins = ["tests.stack", "tests.gptoss_stack"]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user_factory(db: Any) -> Callable[..., Any]:
    def make(username: str, role: str | None = MEMBERS, **fields: Any) -> Any:
        fields.setdefault("email", f"{username}@example.com")
        user = get_user_model().objects.create_user(username=username, password=PASSWORD, **fields)
        if role:
            assign_role(user, role)
            user.refresh_from_db()
        return user

    return make


@pytest.fixture
def alice(user_factory: Callable[..., Any]) -> Any:
    return user_factory("alice", MEMBERS)


@pytest.fixture
def bob(user_factory: Callable[..., Any]) -> Any:
    return user_factory("bob", MEMBERS)


@pytest.fixture
def audrey(user_factory: Callable[..., Any]) -> Any:
    return user_factory("audrey", AUDITORS)


@pytest.fixture
def adam(user_factory: Callable[..., Any]) -> Any:
    return user_factory("adam", ADMINS)


@pytest.fixture
def client_for() -> Callable[[Any], Client]:
    """Return a test client logged in as the given user."""

    def make(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture(autouse=True)
def http_rate_limit_out_of_the_way(settings: Any) -> None:
    """Most tests make many requests a minute as one user; tests of rate limits set their own limit."""
    settings.HTTP_RATE_LIMIT = "1000000/m"
