"""Fixtures of pii-guard's tests: people in groups, and the portal's chat with a stub engine.

These tests run inside the portal's test run (``make test``), with the plugin installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from portal.registry import registry

if "pii-guard" not in registry["plugins"]:
    raise RuntimeError("pii-guard is not running: install it (pip install -e plugins/pii-guard) or run make test")


@pytest.fixture
def person(transactional_db: Any) -> Callable[..., Any]:
    """Make a user in ``groups`` (the portal's role groups are Members, Auditors, Admins)."""

    def make(username: str, *groups: str) -> Any:
        user = get_user_model().objects.create_user(username, f"{username}@example.com", "a long password 123")
        for name in groups or ("Members",):
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        return user

    return make
