from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from accounts import audit_events, deprovision, signals  # noqa: F401 - connect the role, audit and deactivation signals
        from accounts.roles import ROLE_CHECKS, is_admin
        from accounts.sso_doctor import SSO_CHECKS
        from accounts.views import roles_line
        from portal.navigation import NavItem
        from portal.registry import DashboardWidget, UrlMount, registry

        for role, check in ROLE_CHECKS.items():
            registry.put("role_checks", role, check)
        registry.add("url_mounts", UrlMount("account/", "accounts.urls"))
        registry.add("nav_items", NavItem("Account", "account", lambda user: True, order=900))
        registry.add("nav_items", NavItem("Admin", "admin:index", is_admin, order=950))
        for sso_check in SSO_CHECKS:
            registry.add("sso_checks", sso_check)
        registry.add("dashboard_widgets", DashboardWidget("accounts/_roles_line.html", roles_line, order=0))
