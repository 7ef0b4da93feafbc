"""The admin page of plugins (``/plugins/``): what runs, what was skipped at start-up and why."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal import __version__
from portal.access import role_required
from portal.plugins.config import failed_plugins, owner_of
from portal.registry import registry


def _hooks_by_plugin() -> dict[str, list[str]]:
    """Return the hook names each plugin registered a function for (``name (order)``)."""
    found: dict[str, list[str]] = {}
    for name, entries in sorted(registry["hooks"].items()):
        for entry in entries:
            found.setdefault(owner_of(entry.fn), []).append(f"{name} ({entry.order})")
    return found


def plugin_rows() -> list[dict[str, Any]]:
    """Return one row per plugin found at start-up or skipped: slug, version, state, hooks, warning."""
    failed = failed_plugins()
    running = registry["plugins"]
    hooks = _hooks_by_plugin()
    rows: list[dict[str, Any]] = []
    for found in settings.PORTAL_PLUGIN_DISCOVERY.found:
        config = running.get(found.slug)
        rows.append(
            {
                "slug": found.slug,
                "name": config.verbose_name if config is not None else found.slug,
                "version": found.version,
                "source": found.source,
                "state": "failed" if found.slug in failed else "running",
                "warning": failed.get(found.slug, ""),
                "hooks": hooks.get(found.slug, []),
                "description": getattr(config, "description", ""),
                "url": f"/plugins/{found.slug}/" if config is not None and config.urls else "",
            }
        )
    for skipped in settings.PORTAL_PLUGIN_DISCOVERY.skipped:
        rows.append(
            {
                "slug": skipped.reference,
                "name": skipped.reference,
                "version": "",
                "source": skipped.source,
                "state": "skipped",
                "warning": skipped.reason,
                "hooks": [],
                "description": "",
                "url": "",
            }
        )
    return rows


@require_GET
@role_required("admin")
def plugins(request: HttpRequest) -> HttpResponse:
    """List the installed plugins with their versions, state and warnings (admins only)."""
    return render(request, "portal/plugins.html", {"plugins": plugin_rows(), "portal_version": __version__})
