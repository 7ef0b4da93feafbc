from django.urls import path

from tests.plugins.dummy_plugin.consumers import EchoConsumer

websocket_urlpatterns = [path("echo/", EchoConsumer.as_asgi())]
