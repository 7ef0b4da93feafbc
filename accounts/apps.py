from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Connect the role, audit and deactivation signals; register the shared-cache and mail checks.
        from accounts import audit_events, deprovision, mail_checks, ratelimits, signals  # noqa: F401
        from accounts.roles import ROLE_CHECKS, is_admin, is_member
        from accounts.sso_doctor import SSO_CHECKS
        from accounts.views import budget_widget, roles_line
        from portal.navigation import NavItem
        from portal.registry import DashboardWidget, UrlMount, registry

        for role, check in ROLE_CHECKS.items():
            registry.put("role_checks", role, check)
        registry.add("url_mounts", UrlMount("account/", "accounts.urls"))
        registry.add("url_mounts", UrlMount("usage/", "accounts.usage_urls"))
        registry.add("nav_items", NavItem("Usage", "usage:page", lambda user: True, order=20))
        registry.add("nav_items", NavItem("Account", "account", lambda user: True, order=900))
        registry.add("nav_items", NavItem("Admin", "admin:index", is_admin, order=950))
        for sso_check in SSO_CHECKS:
            registry.add("sso_checks", sso_check)
        registry.add("dashboard_widgets", DashboardWidget("accounts/_roles_line.html", roles_line, order=0))
        registry.add("dashboard_widgets", DashboardWidget("accounts/_budget_widget.html", budget_widget, 15, is_member))
