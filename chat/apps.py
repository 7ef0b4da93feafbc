from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from accounts.roles import is_member
        from chat.routing import websocket_urlpatterns
        from portal.navigation import NavItem
        from portal.registry import UrlMount, registry

        registry.add("nav_items", NavItem("Chat", "chat:index", is_member, order=10))
        registry.add("url_mounts", UrlMount("chat/", "chat.urls"))
        for route in websocket_urlpatterns:
            registry.add("websocket_routes", route)
        _register_retention()


def _register_retention() -> None:
    from django.conf import settings

    from chat.conversations import purge_older_than
    from portal.audit.retention import register_task

    register_task("conversations", lambda: int(settings.CHAT_RETENTION_DAYS), purge_older_than)
