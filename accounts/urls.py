from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.key_list, name="api-keys"),
    path("<int:pk>/revoke/", views.key_revoke, name="api-key-revoke"),
]
