"""The public plugin API of the portal. What docs/plugins.md lists is API; nothing else is.

A plugin imports from here (and from :mod:`portal.hooks`, :mod:`portal.registry`'s
``DashboardWidget``, :mod:`portal.navigation`'s ``NavItem`` and :mod:`portal.access`).
This module imports no app and touches no database, so ``portal/settings.py`` can use
the discovery before Django loads its apps.
"""

from portal.plugins.config import ComposerAction, PluginConfig, PluginNavItem, plugin_settings
from portal.plugins.generation_hooks import (
    AFTER_GENERATE,
    BEFORE_GENERATE,
    GenerationReport,
    PromptCheck,
    PromptRefused,
)
from portal.plugins.page_hooks import COMPOSER_ACTIONS, DASHBOARD_WIDGETS, NAV_ITEMS

__all__ = [
    "AFTER_GENERATE",
    "BEFORE_GENERATE",
    "COMPOSER_ACTIONS",
    "DASHBOARD_WIDGETS",
    "NAV_ITEMS",
    "ComposerAction",
    "GenerationReport",
    "PluginConfig",
    "PluginNavItem",
    "PromptCheck",
    "PromptRefused",
    "plugin_settings",
]
