"""Hooks that add to a page per request: navigation items, dashboard widgets, composer actions.

Each hook is called with the request and returns an iterable of entries. They fail open: a
hook that raises is logged with its plugin's name and left out, and the page renders
without its entries. (Entries that never change are simpler as ``PluginConfig``
declarations, which land in the registry's stores.)
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest
from django.templatetags.static import static

from portal.hooks import get_hooks
from portal.plugins.config import owner_of

logger = logging.getLogger("portal.plugins")

NAV_ITEMS = "portal.nav_items"
DASHBOARD_WIDGETS = "portal.dashboard_widgets"
COMPOSER_ACTIONS = "chat.composer_actions"


def collect(name: str, request: HttpRequest) -> list[Any]:
    """Return the entries every hook ``name`` gives for ``request``, skipping failing hooks."""
    entries: list[Any] = []
    for hook in get_hooks(name):
        try:
            entries.extend(hook(request))
        except Exception:
            logger.exception("%s hook of plugin %s failed; its entries are left out", name, owner_of(hook))
    return entries


def composer_actions(request: HttpRequest) -> list[dict[str, Any]]:
    """Return the chat composer's plugin buttons for ``request``'s user, as the chat page renders them."""
    actions = sorted(collect(COMPOSER_ACTIONS, request), key=lambda action: action.order)
    return [
        {
            "id": f"composer-action-{index}",
            "label": action.label,
            "title": action.title or action.label,
            "module": static(action.module),
            "data": dict(action.data),
        }
        for index, action in enumerate(actions)
    ]
