"""Roles of the portal: three groups, created by a data migration.

- Members chat, see their own usage and manage their own API keys.
- Auditors read the audit pages and nothing else.
- Admins are staff with full admin rights; membership of the group is what grants them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MEMBERS = "Members"
AUDITORS = "Auditors"
ADMINS = "Admins"
ALL_ROLES = (MEMBERS, AUDITORS, ADMINS)


def role_names(user: Any) -> set[str]:
    """Return the role names of a user (empty for anonymous users)."""
    if not getattr(user, "is_authenticated", False):
        return set()
    cached: set[str] | None = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMINS)
        user._portal_roles = cached
    return cached


def is_member(user: Any) -> bool:
    """Members (and admins, who may use everything) can chat."""
    return bool(role_names(user) & {MEMBERS, ADMINS})


def is_auditor(user: Any) -> bool:
    """Auditors, and admins, read the audit trail."""
    return bool(role_names(user) & {AUDITORS, ADMINS})


def is_admin(user: Any) -> bool:
    """Admins manage users, quotas and engines."""
    return ADMINS in role_names(user) and bool(user.is_active)


# The role names the gates and the registry's ``role_checks`` store know, with their checks.
ROLE_CHECKS: dict[str, Callable[[Any], bool]] = {"member": is_member, "auditor": is_auditor, "admin": is_admin}


def assign_role(user: Any, role: str) -> None:
    """Make ``role`` the user's only role; admin rights follow the Admins group."""
    from django.contrib.auth.models import Group

    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    # get_or_create: the groups come from a migration, but an admin may have deleted one.
    user.groups.set([Group.objects.get_or_create(name=role)[0]])
    if hasattr(user, "_portal_roles"):
        del user._portal_roles
