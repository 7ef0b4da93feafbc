"""A plugin for the tests that uses every extension point of docs/plugins.md.

Its prompt hook acts only on markers in the last question, so it is inert in other tests:
``[dummy:refuse]`` refuses, ``[dummy:raise]`` raises, ``[dummy:slow]`` sleeps past the hook
timeout, ``[dummy:shout]`` upper-cases the question and tells the user so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from portal import hooks
from portal.plugins import (
    AFTER_GENERATE,
    BEFORE_GENERATE,
    DASHBOARD_WIDGETS,
    NAV_ITEMS,
    ComposerAction,
    PluginConfig,
    PluginNavItem,
)
from portal.registry import DashboardWidget


def widget_context(request: Any) -> dict[str, Any]:
    from tests.plugins.dummy_plugin.models import Note

    return {"notes": Note.objects.count()}


@dataclass(frozen=True)
class OrderCodeRedactor:
    """An audit.redactors entry: the shop's order codes count as personal data here."""

    name: str = "order_code"
    order: int = 200

    def apply(self, text: str) -> str:
        return re.sub(r"\bORD-\d{6}\b", f"[REDACTED:{self.name}]", text)


class DummyPluginConfig(PluginConfig):
    name = "tests.plugins.dummy_plugin"
    label = "dummy_plugin"
    verbose_name = "Dummy plugin"
    slug = "dummy"
    version = "1.2.3"
    description = "Uses every extension point (tests only)."
    min_portal_version = "0.1"
    max_portal_version = "0.1"
    default_settings = {"greeting": "hello", "shout_suffix": "!"}
    required_settings = ("greeting",)
    urls = "tests.plugins.dummy_plugin.urls"
    websocket_routes = "tests.plugins.dummy_plugin.ws_routes"
    nav_items = (PluginNavItem("Dummy", "index", roles=("member",)),)
    dashboard_widgets = (DashboardWidget("dummy_plugin/widget.html", widget_context, order=700),)
    composer_actions = (ComposerAction("Dummy text", "dummy_plugin/action.js", data={"text": "from the dummy"}),)
    redactors = (OrderCodeRedactor(),)

    def ready(self) -> None:
        super().ready()
        from tests.plugins.dummy_plugin import hooks as dummy_hooks

        hooks.register(BEFORE_GENERATE, dummy_hooks.before_generate, order=50)
        hooks.register(AFTER_GENERATE, dummy_hooks.after_generate)
        hooks.register(NAV_ITEMS, dummy_hooks.nav_items)
        hooks.register(DASHBOARD_WIDGETS, dummy_hooks.dashboard_widgets)
