from portal.plugins import PluginConfig


class IncompatiblePluginConfig(PluginConfig):
    """Written for a portal that does not exist yet."""

    name = "tests.plugins.incompatible_plugin"
    slug = "incompatible"
    version = "1.0"
    min_portal_version = "99.0"
