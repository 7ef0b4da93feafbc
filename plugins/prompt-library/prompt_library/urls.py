"""Mounted by the portal under /plugins/prompt-library/ with the namespace ``prompt-library``."""

from django.urls import path

from prompt_library import views

urlpatterns = [
    path("", views.template_list, name="list"),
    path("new/", views.template_edit, name="new"),
    path("<int:pk>/edit/", views.template_edit, name="edit"),
    path("<int:pk>/delete/", views.template_delete, name="delete"),
    path("api/templates/", views.api_templates, name="api-templates"),
]
