from django.urls import path

from portal.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.events, name="events"),
    path("events/<int:seq>/", views.event_detail, name="event"),
    path("export.<str:fmt>", views.export_events, name="export"),
    path("usage/", views.usage, name="usage"),
]
