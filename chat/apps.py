from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from accounts.roles import is_member
        from portal.navigation import NavItem, register

        register(NavItem("Chat", "chat:index", is_member, order=10))
