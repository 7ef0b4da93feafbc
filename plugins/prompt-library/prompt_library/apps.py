"""The plugin's declaration: what it is and what it adds to the portal."""

from __future__ import annotations

from portal.plugins import ComposerAction, PluginConfig, PluginNavItem


class PromptLibraryConfig(PluginConfig):
    name = "prompt_library"
    verbose_name = "Prompt library"
    slug = "prompt-library"
    version = "0.1.0"
    description = "Team-shared prompt templates with variables, inserted from the chat composer."
    author = "LLM Portal"
    min_portal_version = "0.1"
    max_portal_version = "0.1"
    default_settings = {"max_body_chars": 20_000}
    urls = "prompt_library.urls"
    nav_items = (PluginNavItem("Prompts", "list", roles=("member",), order=20),)
    composer_actions = (
        ComposerAction(
            "Insert template",
            "prompt_library/insert.js",
            title="Insert a prompt template from the library",
            data={"api": "/plugins/prompt-library/api/templates/", "library": "/plugins/prompt-library/"},
        ),
    )
