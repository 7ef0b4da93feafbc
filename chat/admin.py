"""Conversations in Django admin: who, which model and when, never what was said.

Content is private (see chat/staff_access.py): the titles, system prompts and messages are
shown only through the audited content view, linked from each conversation here.
"""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chat.models import ConversationRecord

if TYPE_CHECKING:
    # The admin classes are generic only in django-stubs, not at run time.
    AdminBase = admin.ModelAdmin[ConversationRecord]
else:
    AdminBase = admin.ModelAdmin


@admin.register(ConversationRecord)
class ConversationAdmin(AdminBase):
    list_display = ["pk", "owner", "model", "message_count", "updated_at"]
    list_filter = ["model"]
    search_fields = ["owner__username"]
    fields = ("owner", "model", "message_count", "created_at", "updated_at", "read_content")
    readonly_fields = fields

    @admin.display(description="messages")
    def message_count(self, obj: ConversationRecord) -> int:
        return obj.messages.count()

    @admin.display(description="content")
    def read_content(self, obj: ConversationRecord) -> str:
        url = reverse("chat:staff-read", args=[obj.pk])
        return format_html('<a href="{}">Read it (asks for a reason, which is audited)</a>', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
