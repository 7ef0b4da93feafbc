"""Finding the plugins at start-up, before Django loads its apps (called by ``portal/settings.py``).

Plugins come from two places: the entry-point group ``portal.plugins`` of the installed
packages (``name = "package.apps:TheirPluginConfig"``), and ``PORTAL_PLUGINS`` (a package
name, whose ``apps`` module holds one :class:`PluginConfig` subclass, or the dotted path of
the class itself). Each is checked here, before it reaches ``INSTALLED_APPS``:

- it imports, and names a :class:`PluginConfig` subclass with a valid slug and a version;
- this portal's version is within its ``min_portal_version``/``max_portal_version``;
- every one of its ``required_settings`` has a value (defaults count);
- no plugin found earlier has the same slug, and it is not in ``PORTAL_PLUGINS_DISABLED``.

A plugin that fails a check is skipped with a warning (logged now, listed on the admin page
later) and the portal starts without it. Nothing here touches the database or the app
registry: Django is not set up yet.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any

from packaging.version import InvalidVersion, Version

logger = logging.getLogger("portal.plugins")

ENTRY_POINT_GROUP = "portal.plugins"
ENTRY_POINT = "entry point"
SETTING = "PORTAL_PLUGINS"


@dataclass(frozen=True)
class FoundPlugin:
    """A plugin that passed the checks: its app config goes into ``INSTALLED_APPS``."""

    slug: str
    version: str
    app: str
    source: str


@dataclass(frozen=True)
class SkippedPlugin:
    """A plugin left out at start-up, and why (shown to admins)."""

    reference: str
    source: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What start-up found: the plugins it loads and the ones it skipped."""

    found: tuple[FoundPlugin, ...] = ()
    skipped: tuple[SkippedPlugin, ...] = ()

    @property
    def apps(self) -> list[str]:
        """The app config paths to append to ``INSTALLED_APPS``."""
        return [plugin.app for plugin in self.found]


def discover(
    listed: Sequence[str],
    *,
    portal_version: str,
    plugin_settings: Mapping[str, Any],
    disabled: Sequence[str] = (),
    use_entry_points: bool = True,
) -> Discovery:
    """Find, import and check every plugin; return those to load and those skipped.

    Never raises for a plugin's fault: an import error, a bad declaration, an incompatible
    version or a missing setting skips that plugin with a logged warning. Raises
    ``ValueError`` when an entry of ``plugin_settings`` is not an object (operator error).
    """
    for slug, values in plugin_settings.items():
        if not isinstance(values, dict):
            raise ValueError(f"PORTAL_PLUGIN_SETTINGS[{slug!r}] must be a JSON object.")
    candidates: list[tuple[str, str, Any]] = []
    if use_entry_points:
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            candidates.append((f"{entry_point.name} ({entry_point.value})", ENTRY_POINT, entry_point))
    candidates.extend((reference, SETTING, reference) for reference in listed)

    found: list[FoundPlugin] = []
    skipped: list[SkippedPlugin] = []
    seen_classes: set[str] = set()
    for reference, source, target in candidates:
        try:
            config = _load(target)
            app = f"{config.__module__}.{config.__qualname__}"
            if app in seen_classes:
                continue  # the same plugin both installed and listed
            seen_classes.add(app)
            problem = _problem(config, portal_version, plugin_settings, disabled, found)
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything on import; it is skipped
            problem = f"it failed to import: {type(exc).__name__}: {exc}"
            app = ""
        if problem:
            logger.warning("plugin %s (%s) skipped: %s", reference, source, problem)
            skipped.append(SkippedPlugin(reference, source, problem))
        else:
            found.append(FoundPlugin(config.slug, config.version, app, source))
    known = {plugin.slug for plugin in found} | {item.reference for item in skipped}
    for slug in plugin_settings:
        if slug not in known:
            logger.warning("PORTAL_PLUGIN_SETTINGS names %r, which is not a plugin found at start-up", slug)
    return Discovery(tuple(found), tuple(skipped))


def _load(target: Any) -> Any:
    """Import a plugin's config class from an entry point or a ``PORTAL_PLUGINS`` item."""
    from portal.plugins.config import PluginConfig

    loaded = target.load() if isinstance(target, metadata.EntryPoint) else _import_reference(target)
    if not (inspect.isclass(loaded) and issubclass(loaded, PluginConfig)):
        raise TypeError(f"{loaded!r} is not a subclass of portal.plugins.PluginConfig")
    return loaded


def _import_reference(reference: str) -> Any:
    """``package`` (its ``apps`` module's one PluginConfig) or ``package.apps.ConfigClass``."""
    from portal.plugins.config import PluginConfig

    module_name, _, attribute = reference.rpartition(".")
    if module_name and attribute[:1].isupper():
        return getattr(import_module(module_name), attribute)
    apps_module = import_module(f"{reference}.apps")
    configs = [
        value
        for value in vars(apps_module).values()
        if inspect.isclass(value)
        and issubclass(value, PluginConfig)
        and value is not PluginConfig
        and value.__module__ == apps_module.__name__
    ]
    if len(configs) != 1:
        raise LookupError(f"{reference}.apps must define exactly one PluginConfig subclass, not {len(configs)}")
    return configs[0]


def _problem(
    config: Any,
    portal_version: str,
    plugin_settings: Mapping[str, Any],
    disabled: Sequence[str],
    found: Iterable[FoundPlugin],
) -> str:
    """Return why ``config`` cannot be loaded, or an empty string."""
    from portal.plugins.config import SLUG_PATTERN

    if not isinstance(config.slug, str) or not SLUG_PATTERN.match(config.slug):
        return f"its slug {config.slug!r} is not lower-case letters, digits and dashes (1 to 40, a letter first)"
    if config.slug in disabled:
        return "it is listed in PORTAL_PLUGINS_DISABLED"
    if any(plugin.slug == config.slug for plugin in found):
        return f"another plugin already has the slug {config.slug!r}"
    if not isinstance(config.version, str) or not config.version:
        return "it declares no version"
    incompatible = _incompatible(config, portal_version)
    if incompatible:
        return incompatible
    values = {**config.default_settings, **plugin_settings.get(config.slug, {})}
    missing = [name for name in config.required_settings if values.get(name) in (None, "")]
    if missing:
        return (
            f"required setting(s) {', '.join(missing)} missing: set them in "
            f'PORTAL_PLUGIN_SETTINGS as {{"{config.slug}": {{"{missing[0]}": ...}}}}'
        )
    return ""


def _incompatible(config: Any, portal_version: str) -> str:
    """Say why ``portal_version`` is outside the plugin's bounds, or return an empty string."""
    try:
        current = Version(portal_version)
        low = Version(config.min_portal_version) if config.min_portal_version else None
        high = Version(config.max_portal_version) if config.max_portal_version else None
    except InvalidVersion as exc:
        return f"its portal version bounds do not parse: {exc}"
    if low is not None and current < low:
        return f"it needs portal {config.min_portal_version} or newer; this is {portal_version}"
    # "0.1" as the maximum admits 0.1.x: compare only as many parts as the maximum names.
    if high is not None and current.release[: len(high.release)] > high.release:
        return f"it supports portal versions up to {config.max_portal_version}; this is {portal_version}"
    return ""
