from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.access import role_required
from portal.plugins import plugin_settings
from tests.plugins.dummy_plugin.models import Note


@role_required("member")
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dummy_plugin/index.html",
        {"greeting": plugin_settings("dummy")["greeting"], "notes": Note.objects.all()},
    )
