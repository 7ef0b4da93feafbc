from django.urls import path

from accounts import views

# Mounted at account/ without a namespace, so the page keeps its URL name "account".
urlpatterns = [
    path("", views.account, name="account"),
    path("keys/", views.key_list, name="api-keys"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="api-key-revoke"),
]
