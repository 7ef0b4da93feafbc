"""The dummy plugin's hooks (see apps.py for the markers)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from portal.navigation import NavItem
from portal.plugins import GenerationReport, PromptCheck, plugin_settings
from portal.registry import DashboardWidget

# What after_generate saw, for the tests to read.
REPORTS: list[GenerationReport] = []


def before_generate(check: PromptCheck) -> None:
    question = check.messages[-1]["content"]
    if "[dummy:refuse]" in question:
        check.refuse("The dummy plugin does not let this through.")
    if "[dummy:raise]" in question:
        raise RuntimeError("the dummy plugin broke")
    if "[dummy:slow]" in question:
        time.sleep(settings.PORTAL_PLUGIN_HOOK_TIMEOUT + 2)
    if "[dummy:shout]" in question:
        check.messages[-1]["content"] = question.upper() + plugin_settings("dummy")["shout_suffix"]
        check.notify("The dummy plugin upper-cased your question.")


def after_generate(report: GenerationReport) -> None:
    REPORTS.append(report)


def nav_items(request: Any) -> list[NavItem]:
    return [NavItem("Dummy (live)", "dummy:index", lambda user: user.is_staff, order=601)]


def dashboard_widgets(request: Any) -> list[DashboardWidget]:
    greeting = plugin_settings("dummy")["greeting"]
    return [DashboardWidget("dummy_plugin/greeting.html", lambda request: {"greeting": greeting}, order=701)]
