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
