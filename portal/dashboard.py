"""The home page's widgets: the registry's ``dashboard_widgets`` and the ``portal.dashboard_widgets`` hooks.

Every app (and plugin) adds its own widgets; the portal only orders them, keeps those the
user may see, and renders each on its own, so that one failing widget is logged with its
owner's name and left out instead of taking the home page down.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from portal.plugins.config import owner_of
from portal.plugins.page_hooks import DASHBOARD_WIDGETS, collect
from portal.registry import DashboardWidget, registry

logger = logging.getLogger("portal.dashboard")


def render_widgets(request: HttpRequest) -> list[SafeString]:
    """Render the widgets ``request.user`` may see, by ``order``; failing ones are left out."""
    widgets: list[DashboardWidget] = [*registry["dashboard_widgets"], *collect(DASHBOARD_WIDGETS, request)]
    rendered = []
    for widget in sorted(widgets, key=lambda widget: widget.order):
        try:
            if widget.visible(request.user):
                rendered.append(render_to_string(widget.template, widget.context(request), request=request))
        except Exception:
            logger.exception("dashboard widget %s of %s failed", widget.template, owner_of(widget.context))
    return rendered
