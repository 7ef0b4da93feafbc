from portal.plugins import PluginConfig


class NeedsSettingPluginConfig(PluginConfig):
    """Needs an API key nobody configured."""

    name = "tests.plugins.needs_setting_plugin"
    slug = "needs-setting"
    version = "1.0"
    required_settings = ("api_key",)
    urls = "tests.plugins.needs_setting_plugin.urls"
