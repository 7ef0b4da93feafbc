from django.urls import path, re_path

from inference.api import views

app_name = "api"

urlpatterns = [
    path("models", views.models, name="models"),
    path("chat/completions", views.chat_completions, name="chat-completions"),
    re_path(r"^(?P<path>.*)$", views.not_found, name="not-found"),
]
