"""Readiness checks: is each part the portal depends on answering?"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection

ReadinessCheck = Callable[[], dict[str, Any]]
_extra_checks: dict[str, ReadinessCheck] = {}


def register_check(name: str, check: ReadinessCheck) -> None:
    """Add a named readiness check; it returns a dict with at least ``ok``."""
    _extra_checks[name] = check


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def check_cache() -> dict[str, Any]:
    key = f"readyz:{secrets.token_hex(4)}"
    cache.set(key, "1", 5)
    ok = cache.get(key) == "1"
    cache.delete(key)
    return {"ok": ok}


def check_channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer configured"}

    async def round_trip() -> bool:
        channel = await layer.new_channel("readyz.")
        await layer.send(channel, {"type": "readyz.ping"})
        message = await layer.receive(channel)
        return bool(message.get("type") == "readyz.ping")

    return {"ok": async_to_sync(round_trip)(), "backend": type(layer).__name__}


def readiness() -> tuple[bool, dict[str, Any]]:
    """Run every check; a check that raises counts as not ready with its error."""
    checks: dict[str, ReadinessCheck] = {
        "database": check_database,
        "cache": check_cache,
        "channel_layer": check_channel_layer,
        **_extra_checks,
    }
    report: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            report[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ready = all(item.get("ok") for item in report.values())
    return ready, report
