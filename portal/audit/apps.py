from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail: events, the hash chain, redaction and the auditor's pages."""

    name = "portal.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.conf import settings

        from portal import metrics
        from portal.audit import signals  # noqa: F401 - records logins, logouts, MFA and password events
        from portal.audit.access import can_audit
        from portal.audit.queries import chain_metrics, chain_state
        from portal.audit.retention import purge_content, register_task
        from portal.navigation import NavItem
        from portal.registry import DashboardWidget, UrlMount, registry

        registry.add("url_mounts", UrlMount("audit/", "portal.audit.urls"))
        registry.add("nav_items", NavItem("Audit", "audit:events", can_audit, order=800))
        widget = DashboardWidget("audit/_chain_widget.html", lambda request: {"chain": chain_state()}, 60, can_audit)
        registry.add("dashboard_widgets", widget)
        register_task("audit_content", lambda: int(settings.AUDIT_CONTENT_DAYS), purge_content)
        metrics.register_audit_state(chain_metrics)
