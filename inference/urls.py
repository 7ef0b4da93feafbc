from django.urls import path

from inference import views

app_name = "inference"

urlpatterns = [
    path("", views.engine_list, name="engines"),
    path("status.json", views.status_json, name="status-json"),
    # Before the engine patterns: "external/new" would otherwise read as engine "external", action "new".
    path("external/new/", views.add_external, name="add-external"),
    path("<slug:name>/", views.engine_detail, name="engine"),
    path("<slug:name>/metrics.json", views.metrics_json, name="metrics-json"),
    path("<slug:name>/<slug:action>/", views.engine_action, name="engine-action"),
]
