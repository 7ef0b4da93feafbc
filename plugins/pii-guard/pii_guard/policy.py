"""What pii-guard does for a user: the mode of their groups, from the plugin's settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from portal.plugins import plugin_settings

OFF, MASK, BLOCK = "off", "mask", "block"
# The strictest mode of a user's groups wins.
STRICTNESS = {OFF: 0, MASK: 1, BLOCK: 2}


class PolicyError(ValueError):
    """The plugin's settings name a mode that does not exist."""


def _mode(value: Any, where: str) -> str:
    if value not in STRICTNESS:
        raise PolicyError(f"pii-guard setting {where} is {value!r}; use one of: {', '.join(STRICTNESS)}")
    return str(value)


def mode_for(groups: Iterable[str], settings: Mapping[str, Any] | None = None) -> str:
    """Return ``off``, ``mask`` or ``block`` for a user in ``groups``.

    Groups named in the ``groups`` setting decide (the strictest of them); a user in none of
    them gets ``default``. Raises :class:`PolicyError` for a mode that does not exist, so a
    typo in the settings refuses requests (fail closed) instead of letting data through.
    """
    settings = settings if settings is not None else plugin_settings("pii-guard")
    by_group = settings.get("groups") or {}
    if not isinstance(by_group, Mapping):
        raise PolicyError("pii-guard setting groups must be an object of group name -> mode")
    modes = [_mode(by_group[group], f"groups[{group!r}]") for group in groups if group in by_group]
    if not modes:
        return _mode(settings.get("default", MASK), "default")
    return max(modes, key=STRICTNESS.__getitem__)


def kinds(settings: Mapping[str, Any] | None = None) -> frozenset[str] | None:
    """Return the redactor names pii-guard acts on, or None for all of them."""
    settings = settings if settings is not None else plugin_settings("pii-guard")
    chosen = settings.get("kinds")
    if chosen is None:
        return None
    if not isinstance(chosen, list) or not all(isinstance(name, str) for name in chosen):
        raise PolicyError("pii-guard setting kinds must be a list of redactor names, or null for all")
    return frozenset(chosen)
