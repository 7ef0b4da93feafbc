"""The navigation bar: each app adds its entries to the registry with the role that may see them.

An app calls ``registry.add("nav_items", NavItem(...))`` in ``ready()``; this module reads the
``nav_items`` store and shows each user the entries their role may use, by ``order``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from portal.registry import registry


@dataclass(frozen=True)
class NavItem:
    """One entry: shown to users for whom ``visible(user)`` is true, linking to ``url_name``."""

    label: str
    url_name: str
    visible: Callable[[Any], bool]
    order: int = 100


def items_for(user: Any, extra: Sequence[NavItem] = ()) -> list[dict[str, str]]:
    """Return the entries ``user`` may use (the registry's and ``extra``), as label and URL."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [
        {"label": item.label, "url": reverse(item.url_name), "name": item.url_name}
        for item in sorted((*registry["nav_items"], *extra), key=lambda entry: entry.order)
        if item.visible(user)
    ]


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: the navigation of the current user (with ``portal.nav_items`` hooks)."""
    from django.conf import settings

    from portal.plugins.page_hooks import NAV_ITEMS, collect

    extra = collect(NAV_ITEMS, request) if getattr(request.user, "is_authenticated", False) else []
    return {"nav_items": items_for(request.user, extra), "signup_open": settings.PORTAL_SIGNUP_OPEN}
