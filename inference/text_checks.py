"""Checks on text from clients: whether it can be stored and sent on as it is."""

from __future__ import annotations

from typing import Any


def storable_text(value: Any) -> bool:
    """Return whether ``value`` is a string that can be stored and sent as it is.

    JSON may spell lone surrogates (``"\\ud800"``), which UTF-8 cannot encode, and NUL,
    which PostgreSQL cannot store: both would fail only when saved, after validation.
    """
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
