"""WebSocket URL routes of the portal: what the apps put in the registry's ``websocket_routes``."""

from django.urls import URLPattern, URLResolver

from portal.registry import registry

# Read once, when portal.asgi builds the router (after every app's ready() has run).
websocket_urlpatterns: list[URLPattern | URLResolver] = list(registry["websocket_routes"])
