"""Loaded by pytest before Django's settings (``-p tests.plugin_env`` in pyproject.toml).

The test run enables the dummy plugin of ``tests/plugins/dummy_plugin`` through
``PORTAL_PLUGINS``, as an operator would; its hooks act only on markers in a question, so
the other tests do not notice it. Web processes the tests start inherit it.
"""

import os

listed = [item for item in os.environ.get("PORTAL_PLUGINS", "").split(",") if item.strip()]
if "tests.plugins.dummy_plugin" not in listed:
    os.environ["PORTAL_PLUGINS"] = ",".join([*listed, "tests.plugins.dummy_plugin"])
