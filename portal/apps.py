from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal.navigation import NavItem
        from portal.registry import registry

        registry.add("nav_items", NavItem("Home", "home", lambda user: True, order=0))
