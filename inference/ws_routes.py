"""WebSocket routes of the inference app (the engine status socket); added to the registry in ``ready()``."""

from django.urls import path

from inference import consumers

websocket_urlpatterns = [
    path("ws/status/", consumers.StatusConsumer.as_asgi()),
]
