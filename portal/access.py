"""Ask whether a user holds a role, without knowing how roles are stored.

The accounts app owns roles and fills the registry's ``role_checks`` store with one check per
role name (``member``, ``auditor``, ``admin``). ``portal/`` asks here, so it never imports
``accounts``. A role nobody registered is held by nobody: the answer fails closed.
"""

from __future__ import annotations

from typing import Any

from portal.registry import registry


def has_role(user: Any, role: str) -> bool:
    """Return True when ``user`` holds ``role``; False for anonymous users and unknown roles."""
    check = registry["role_checks"].get(role)
    return bool(check is not None and check(user))
