from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail: events, the hash chain, redaction and the auditor's pages."""

    name = "portal.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from portal.audit import signals  # noqa: F401 - records logins, logouts, MFA and password events
        from portal.audit.access import can_audit
        from portal.navigation import NavItem, register

        register(NavItem("Audit", "audit:events", can_audit, order=800))

        from django.conf import settings

        from portal.audit.retention import purge_content, register_task

        register_task("audit_content", lambda: int(settings.AUDIT_CONTENT_DAYS), purge_content)
