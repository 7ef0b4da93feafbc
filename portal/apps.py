from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import metrics
        from portal.access import has_role
        from portal.navigation import NavItem
        from portal.registry import registry

        # Multiprocess mode: live gauges of web processes that died must not count any more.
        metrics.forget_dead_processes()

        registry.add("nav_items", NavItem("Home", "home", lambda user: True, order=0))
        registry.add("nav_items", NavItem("Plugins", "plugins", lambda user: has_role(user, "admin"), order=940))
