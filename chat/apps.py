from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from accounts.roles import is_member
        from portal.navigation import NavItem, register

        register(NavItem("Chat", "chat:index", is_member, order=10))
        _register_retention()


def _register_retention() -> None:
    from django.conf import settings

    from chat.conversations import purge_older_than
    from portal.audit.retention import register_task

    register_task("conversations", lambda: int(settings.CHAT_RETENTION_DAYS), purge_older_than)
