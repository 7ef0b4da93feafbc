from typing import Any

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from portal import views
from portal.plugins import views as plugin_views
from portal.registry import UrlMount, registry

admin.site.site_header = "LLM Portal administration"
admin.site.site_title = "LLM Portal"
# Admin logins go through allauth, so MFA and its rate limits apply there too.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]


def _included(mount: UrlMount) -> Any:
    if mount.namespace is None:
        return include(mount.urlconf)
    return include((mount.urlconf, mount.namespace), namespace=mount.namespace)


# An outage of the database or Redis is a 503, any other failure the 500 page (portal/outage.py).
handler500 = "portal.views.server_error"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    # The apps' pages (chat/, engines/, account/, ...), as they mounted them in the registry.
    path("plugins/", plugin_views.plugins, name="plugins"),
    *(path(mount.prefix, _included(mount)) for mount in registry["url_mounts"]),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
]
