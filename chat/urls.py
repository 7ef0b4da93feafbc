from django.urls import path

from chat import staff_views, views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/", views.index, name="conversation"),
    path("api/conversations/", views.conversation_list, name="api-list"),
    path("api/conversations/<int:pk>/", views.conversation_detail, name="api-detail"),
    path("api/conversations/<int:pk>/rename/", views.conversation_rename, name="api-rename"),
    path("api/conversations/<int:pk>/delete/", views.conversation_delete, name="api-delete"),
    path("staff/<int:pk>/", staff_views.read_conversation, name="staff-read"),
]
