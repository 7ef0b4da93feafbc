from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def check_engines() -> dict[str, Any]:
    """Readiness: each engine's state; not ready only when a ready engine is required and none is."""
    from django.conf import settings

    from inference.status import snapshot

    engines = snapshot()
    serving = any(engine["state"] == "ready" for engine in engines)
    return {
        "ok": serving or not settings.ENGINE_REQUIRED_FOR_READY,
        "serving": serving,
        "engines": [
            {key: engine[key] for key in ("name", "model", "state", "progress", "message")} for engine in engines
        ],
    }


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        from accounts.roles import is_admin
        from inference import audit_events  # noqa: F401 - records engine config changes
        from portal.health import register_check
        from portal.navigation import NavItem, register

        register(NavItem("Engines", "inference:engines", is_admin, order=500))
        register_check("engines", check_engines)
