from django.urls import path

from tests.plugins.dummy_plugin import views

urlpatterns = [path("", views.index, name="index")]
