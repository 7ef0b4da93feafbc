"""The trail in Django admin: read only, for everyone (superusers included)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from portal.audit.models import Event
from portal.read_only_admin import ReadOnlyAdmin


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "action", "actor_name", "target", "outcome", "model"]
    list_filter = ["action", "outcome", "channel"]
    search_fields = ["actor_name", "target", "request_id"]
    actions = None

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Event._meta.fields]
