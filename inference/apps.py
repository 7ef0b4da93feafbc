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


def served_model_names() -> list[str]:
    """Return the model names the configured engines serve."""
    from inference.models import EngineConfig

    return list(EngineConfig.objects.values_list("served_model_name", flat=True).distinct())


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        from accounts.policies import set_served_models
        from accounts.roles import is_admin
        from portal.health import register_check
        from portal.navigation import NavItem, register

        register(NavItem("Engines", "inference:engines", is_admin, order=500))
        # Policies may only name served models; accounts asks inference through this callable.
        set_served_models(served_model_names)
        register_check("engines", check_engines)
