"""Readiness checks: is each part the portal depends on answering?

The portal checks its own parts; the apps add theirs to the registry's ``readiness_checks``
store (a check returns a dict with at least ``ok``). Each check is bounded in time (the
database and Redis clients have connect and read timeouts in settings; the channel-layer
round trip is cut off here), so /readyz answers even when a part hangs. The full report,
with error texts and engine names, is logged and shown to admins only: anonymous load
balancers get an ``ok`` flag per part and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection

from portal.registry import registry

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], dict[str, Any]]
Report = dict[str, dict[str, Any]]

CHANNEL_LAYER_TIMEOUT = 2.0


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

    async def bounded_round_trip() -> bool:
        return await asyncio.wait_for(round_trip(), CHANNEL_LAYER_TIMEOUT)

    backend = type(layer).__name__
    try:
        ok = async_to_sync(bounded_round_trip)()
    except TimeoutError:
        return {"ok": False, "backend": backend, "error": f"no reply within {CHANNEL_LAYER_TIMEOUT:g} s"}
    return {"ok": ok, "backend": backend}


def readiness() -> tuple[bool, Report]:
    """Run every check and log the ones that fail; a check that raises counts as not ready."""
    checks: dict[str, ReadinessCheck] = {
        "database": check_database,
        "cache": check_cache,
        "channel_layer": check_channel_layer,
        # The apps' checks (the inference app's "engines", ...), from the registry.
        **registry["readiness_checks"],
    }
    report: Report = {}
    for name, check in checks.items():
        try:
            report[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not report[name].get("ok"):
            logger.warning("Readiness check %s failed: %s", name, report[name])
    ready = all(item.get("ok") for item in report.values())
    return ready, report


def summary(report: Report) -> Report:
    """Return only the ``ok`` flag of each check: what may be shown to anyone."""
    return {name: {"ok": bool(item.get("ok"))} for name, item in report.items()}
