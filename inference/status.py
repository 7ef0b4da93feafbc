"""What users and admins see of the engines: a JSON snapshot, pushed over /ws/status/."""

from __future__ import annotations

from typing import Any

STATUS_GROUP = "engine-status"


def snapshot() -> list[dict[str, Any]]:
    """Return the public state of every engine (name, model, state, progress, message)."""
    return []
