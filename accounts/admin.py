"""Admins list and revoke anyone's API keys here; keys are created by their owners (or the CLI)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import api_keys
from accounts.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("prefix", "name", "owner", "status", "model_names", "created_at", "expires_at", "last_used_at")
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("prefix", "name", "owner__username", "owner__email")
    readonly_fields = ("owner", "prefix", "secret_hash", "created_at", "last_used_at", "revoked_at")
    fields = ("owner", "name", "prefix", "model_names", "expires_at", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_keys"]

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return api_keys.status(key)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key's secret is shown once, to its owner: admins cannot create keys for others here.
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_keys.revoke(key) for key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke, do not erase: the audit trail names the prefix
        return actions
