from typing import TYPE_CHECKING

from django.contrib import admin

from chat.models import Conversation, Message

if TYPE_CHECKING:
    # The admin classes are generic only in django-stubs, not at run time.
    InlineBase = admin.TabularInline[Message, Conversation]
    AdminBase = admin.ModelAdmin[Conversation]
else:
    InlineBase, AdminBase = admin.TabularInline, admin.ModelAdmin


class MessageInline(InlineBase):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "completion_tokens", "ttft_ms", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(AdminBase):
    list_display = ["__str__", "owner", "model", "updated_at"]
    list_filter = ["model"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["owner", "created_at", "updated_at"]
    inlines = [MessageInline]
