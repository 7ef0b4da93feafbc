from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from portal import views

admin.site.site_header = "LLM Portal administration"
admin.site.site_title = "LLM Portal"
# Admin logins go through allauth, so MFA and its rate limits apply there too.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", views.home, name="home"),
    path("account/", views.account, name="account"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("chat/", include("chat.urls")),
    path("engines/", include("inference.urls")),
    path("usage/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
]
