"""The navigation bar: each app registers its entries with the role that may see them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.urls import reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    visible: Callable[[Any], bool]
    order: int = 100


_items: list[NavItem] = []


def register(item: NavItem) -> None:
    """Add an entry to the navigation bar (called from an app's ``ready()``)."""
    if any(existing.url_name == item.url_name for existing in _items):
        return
    _items.append(item)
    _items.sort(key=lambda entry: entry.order)


def items_for(user: Any) -> list[dict[str, str]]:
    """Return the entries ``user`` may use, as label and URL."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [
        {"label": item.label, "url": reverse(item.url_name), "name": item.url_name}
        for item in _items
        if item.visible(user)
    ]


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: the navigation of the current user."""
    from django.conf import settings

    return {"nav_items": items_for(request.user), "signup_open": settings.PORTAL_SIGNUP_OPEN}
