from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from accounts.roles import is_admin, is_member
        from chat.routing import websocket_urlpatterns
        from chat.views import failures_widget, recent_widget
        from portal.navigation import NavItem
        from portal.registry import DashboardWidget, UrlMount, registry

        registry.add("nav_items", NavItem("Chat", "chat:index", is_member, order=10))
        registry.add("url_mounts", UrlMount("chat/", "chat.urls"))
        registry.add("dashboard_widgets", DashboardWidget("chat/_recent_widget.html", recent_widget, 20, is_member))
        registry.add("dashboard_widgets", DashboardWidget("chat/_failures_widget.html", failures_widget, 50, is_admin))
        for route in websocket_urlpatterns:
            registry.add("websocket_routes", route)
        _register_retention()


def _register_retention() -> None:
    from django.conf import settings

    from chat.conversations import purge_older_than
    from portal.audit.retention import register_task

    register_task("conversations", lambda: int(settings.CHAT_RETENTION_DAYS), purge_older_than)
