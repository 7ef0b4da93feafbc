"""The plugin contract: :class:`PluginConfig`, the ``AppConfig`` every plugin's app subclasses.

A plugin declares what it is (slug, version, compatible portal versions, settings) and what
it adds (URLs, WebSocket routes, navigation items, dashboard widgets, composer actions,
redactors) as class attributes. :meth:`PluginConfig.ready` puts the declarations into the
registry under the plugin's slug; a plugin that also registers hooks overrides ``ready()``,
calls ``super().ready()`` first and registers them with :func:`portal.hooks.register`.

A ``ready()`` that raises does not stop the portal: whatever the plugin had registered is
taken out of the registry again, the plugin is listed as failed on the admin page, and the
error is logged with the plugin's name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import wraps
from importlib import import_module
from types import MappingProxyType
from typing import Any, ClassVar

from django.apps import AppConfig
from django.conf import settings

from portal.access import has_role
from portal.navigation import NavItem
from portal.registry import DashboardWidget, UrlMount, registry

logger = logging.getLogger("portal.plugins")

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

# Plugins whose ready() raised: slug -> the error, shown on the admin page.
_failed: dict[str, str] = {}


@dataclass(frozen=True)
class PluginNavItem:
    """A navigation entry of a plugin: ``url_name`` inside the plugin's URLs, for ``roles``.

    ``roles`` are role names (``member``, ``auditor``, ``admin``); a user holding any of
    them sees the entry. ``url_name`` is the name in the plugin's URL conf, without the
    namespace (the portal adds the slug).
    """

    label: str
    url_name: str
    roles: tuple[str, ...] = ("member",)
    order: int = 600


@dataclass(frozen=True)
class ComposerAction:
    """A button in the chat composer that runs a plugin's JavaScript module.

    ``module`` is a static path (``"my_plugin/insert.js"``); the module exports
    ``run(composer, action)``. ``data`` is handed to it as ``action.data`` (JSON-serialisable).
    """

    label: str
    module: str
    roles: tuple[str, ...] = ("member",)
    title: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100


def holds_any(roles: Sequence[str]) -> Callable[[Any], bool]:
    """Return a check that is true for users holding any of ``roles``."""
    return lambda user: any(has_role(user, role) for role in roles)


class PluginConfig(AppConfig):
    """Base of every plugin's app config. Subclass it in the plugin's ``apps.py``.

    Required: ``name`` (the package), ``slug``, ``version``. The rest is optional.
    """

    slug: ClassVar[str] = ""
    version: ClassVar[str] = ""
    description: ClassVar[str] = ""
    author: ClassVar[str] = ""
    # Inclusive bounds; "0.1" as the maximum admits every 0.1.x release.
    min_portal_version: ClassVar[str | None] = None
    max_portal_version: ClassVar[str | None] = None
    default_settings: ClassVar[Mapping[str, Any]] = {}
    required_settings: ClassVar[Sequence[str]] = ()
    # Dotted module paths, mounted under /plugins/<slug>/ and /ws/plugins/<slug>/.
    urls: ClassVar[str | None] = None
    websocket_routes: ClassVar[str | None] = None
    nav_items: ClassVar[Sequence[PluginNavItem]] = ()
    dashboard_widgets: ClassVar[Sequence[DashboardWidget]] = ()
    composer_actions: ClassVar[Sequence[ComposerAction]] = ()
    redactors: ClassVar[Sequence[Any]] = ()
    # True while ready() runs (see _isolated).
    _starting = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every plugin's ready(), overridden or not, runs inside the isolation below.
        cls.ready = _isolated(cls.__dict__.get("ready", PluginConfig._declare))  # type: ignore[method-assign, assignment]

    def ready(self) -> None:
        """Register what the class declares; subclasses call ``super().ready()`` first."""
        register_declarations(self)

    _declare = ready

    @property
    def settings(self) -> Mapping[str, Any]:
        """This plugin's settings (see :func:`plugin_settings`)."""
        return plugin_settings(self.slug)


def _isolated(ready: Callable[[PluginConfig], None]) -> Callable[[PluginConfig], None]:
    """Wrap a plugin's ``ready()``: if it raises, undo its registrations and list it as failed."""
    if getattr(ready, "_isolated", False):
        return ready

    @wraps(ready)
    def guarded(self: PluginConfig) -> None:
        if getattr(self, "_starting", False):
            ready(self)  # super().ready() from a subclass: the outermost call isolates
            return
        before = {key: registry[key] for key in registry}
        self._starting = True
        try:
            ready(self)
        except Exception as exc:
            for key, store in before.items():
                registry.replace(key, store)
            _failed[self.slug or self.name] = f"{type(exc).__name__}: {exc}"
            logger.exception("plugin %s failed to start and was left out", self.slug or self.name)
        finally:
            self._starting = False

    guarded._isolated = True  # type: ignore[attr-defined]
    return guarded


def register_declarations(config: PluginConfig) -> None:
    """Put what ``config`` declares into the registry, under its slug (called by ``ready()``)."""
    from portal.plugins.page_hooks import COMPOSER_ACTIONS

    slug = config.slug
    registry.put("plugins", slug, config)
    if config.urls:
        registry.add("url_mounts", UrlMount(f"plugins/{slug}/", config.urls, namespace=slug))
    if config.websocket_routes:
        from channels.routing import URLRouter
        from django.urls import path

        routes = import_module(config.websocket_routes).websocket_urlpatterns
        registry.add("websocket_routes", path(f"ws/plugins/{slug}/", URLRouter(routes)))
    for item in config.nav_items:
        url_name = f"{slug}:{item.url_name}"
        registry.add("nav_items", NavItem(item.label, url_name, holds_any(item.roles), order=item.order))
    for widget in config.dashboard_widgets:
        registry.add("dashboard_widgets", widget)
    for redactor in config.redactors:
        registry.add("redactors", redactor)
    if config.composer_actions:
        from portal import hooks

        actions = tuple(config.composer_actions)
        hooks.register(COMPOSER_ACTIONS, lambda request: [a for a in actions if holds_any(a.roles)(request.user)])


def plugin_settings(slug: str) -> Mapping[str, Any]:
    """Return the settings of the plugin ``slug``: its defaults, overridden by the operator's.

    The operator's values come from ``PORTAL_PLUGIN_SETTINGS`` (JSON ``{"<slug>": {...}}``,
    or ``PORTAL_PLUGIN_SETTINGS_FILE``). The result is read-only. Raises ``LookupError`` for
    a slug that is not a running plugin.
    """
    config = registry["plugins"].get(slug)
    if config is None:
        raise LookupError(f"No running plugin has the slug {slug!r}.")
    configured = settings.PORTAL_PLUGIN_SETTINGS.get(slug, {})
    return MappingProxyType({**config.default_settings, **configured})


def failed_plugins() -> Mapping[str, str]:
    """Return the plugins whose ``ready()`` raised (slug -> error), for the admin page."""
    return MappingProxyType(dict(_failed))


def owner_of(function: Any) -> str:
    """Return the slug (or app label) of the app a hook function comes from, for log lines."""
    from django.apps import apps

    module = getattr(function, "__module__", None) or ""
    app = apps.get_containing_app_config(module) if apps.apps_ready else None
    if app is None:
        return module or repr(function)
    return str(getattr(app, "slug", "") or app.label)
