from __future__ import annotations

from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference"

    def ready(self) -> None:
        from accounts.policies import set_served_models
        from accounts.roles import is_admin, is_member
        from inference import audit_events  # noqa: F401 - records engine config changes
        from inference.doctor_checks_ops import ENGINE_OPS_CHECKS
        from inference.engine_metrics import EngineCollector
        from inference.harmony_vocabulary import check_harmony_vocabulary
        from inference.health_checks import check_engines, check_engines_ready
        from inference.status import served_model_names
        from inference.views import engines_widget
        from inference.ws_routes import websocket_urlpatterns
        from portal import metrics
        from portal.navigation import NavItem
        from portal.registry import DashboardWidget, UrlMount, registry

        registry.add("nav_items", NavItem("Engines", "inference:engines", is_admin, order=500))
        registry.add("url_mounts", UrlMount("engines/", "inference.urls"))
        registry.add("url_mounts", UrlMount("v1/", "inference.api.urls"))
        registry.put("readiness_checks", "engines", check_engines_ready)
        registry.add("doctor_checks", check_engines)
        registry.add("doctor_checks", check_harmony_vocabulary)
        widget = DashboardWidget("inference/_engines_widget.html", engines_widget, order=10, visible=is_member)
        registry.add("dashboard_widgets", widget)
        for doctor_check in ENGINE_OPS_CHECKS:
            registry.add("doctor_checks", doctor_check)
        for route in websocket_urlpatterns:
            registry.add("websocket_routes", route)
        metrics.register_collector("engines", EngineCollector())
        # Policies may only name served models; accounts asks inference through this callable.
        set_served_models(served_model_names)
