from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from accounts.roles import is_admin
        from portal.navigation import NavItem, register

        register(NavItem("Home", "home", lambda user: True, order=0))
        register(NavItem("Account", "account", lambda user: True, order=900))
        register(NavItem("Admin", "admin:index", is_admin, order=950))
