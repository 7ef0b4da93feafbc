"""Who may read the audit trail: holders of ``audit.view_event`` (Auditors and Admins)."""

from __future__ import annotations

from typing import Any

VIEW_PERMISSION = "audit.view_event"


def can_audit(user: Any) -> bool:
    """Return whether ``user`` may open the auditor's pages (the group grants the permission)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.has_perm(VIEW_PERMISSION))
