"""WebSocket URL routes of the portal, collected from the apps."""

from django.urls import URLPattern, URLResolver

from chat.routing import websocket_urlpatterns as chat_routes
from inference.routing import websocket_urlpatterns as inference_routes

websocket_urlpatterns: list[URLPattern | URLResolver] = [*inference_routes]
websocket_urlpatterns += chat_routes
