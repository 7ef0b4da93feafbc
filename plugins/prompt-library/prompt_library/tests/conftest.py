"""Fixtures of the prompt library's tests: team members, logged-in clients.

These tests run inside the portal's test run (``make test``), with the plugin installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from portal.registry import registry

if "prompt-library" not in registry["plugins"]:
    raise RuntimeError(
        "prompt-library is not running: install it (pip install -e plugins/prompt-library) or run make test"
    )

PASSWORD = "correct horse battery staple"


@pytest.fixture
def person(db: Any) -> Callable[..., Any]:
    """Make a user in the role group ``group`` (the portal's groups: Members, Auditors, Admins)."""

    def make(username: str, group: str = "Members") -> Any:
        user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)
        user.groups.add(Group.objects.get_or_create(name=group)[0])
        return user

    return make


@pytest.fixture
def client_of() -> Callable[[Any], Client]:
    def make(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make
