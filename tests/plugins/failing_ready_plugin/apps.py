from portal.navigation import NavItem
from portal.plugins import PluginConfig
from portal.registry import registry


class FailingReadyPluginConfig(PluginConfig):
    """Registers a navigation item, then fails: the item must be taken out again."""

    name = "tests.plugins.failing_ready_plugin"
    slug = "failing-ready"
    version = "1.0"

    def ready(self) -> None:
        super().ready()
        registry.add("nav_items", NavItem("Half-registered", "home", lambda user: True))
        raise RuntimeError("the plugin's start-up broke")
