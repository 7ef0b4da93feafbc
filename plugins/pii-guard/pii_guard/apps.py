"""The plugin's declaration: a prompt check on ``inference.before_generate``."""

from __future__ import annotations

from portal import hooks
from portal.plugins import BEFORE_GENERATE, PluginConfig


class PiiGuardConfig(PluginConfig):
    name = "pii_guard"
    verbose_name = "PII guard"
    slug = "pii-guard"
    version = "0.1.0"
    description = "Masks or blocks personal data in prompts before they reach the model, per group."
    author = "LLM Portal"
    min_portal_version = "0.1"
    max_portal_version = "0.1"
    # mode: "mask" (replace, tell the user), "block" (refuse the request) or "off".
    # groups: a mode per group name; a user in several configured groups gets the strictest.
    # kinds: the redactor names acted on (None: every redactor the portal has).
    default_settings = {"default": "mask", "groups": {}, "kinds": None}

    def ready(self) -> None:
        super().ready()
        from pii_guard.guard import check_prompt

        # Early (order -100): later checks and the model see the masked text only.
        hooks.register(BEFORE_GENERATE, check_prompt, order=-100)
