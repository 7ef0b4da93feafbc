import a_module_that_is_not_installed  # type: ignore[import-not-found]  # noqa: F401

from portal.plugins import PluginConfig


class BrokenPluginConfig(PluginConfig):
    name = "tests.plugins.broken_plugin"
    slug = "broken"
    version = "1.0"
