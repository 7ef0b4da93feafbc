"""The chat page and the small JSON API its sidebar uses (list, load, rename, delete)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.gates import member_required
from chat import conversations, streams
from chat.conversations import ChatRejected
from chat.models import Conversation
from inference.sampling import REASONING_EFFORTS, TEMPERATURE_RANGE, allowed_models, max_tokens_limit
from inference.status import model_choices
from portal.audit.queries import refusals_since
from portal.plugins.page_hooks import composer_actions


def _owned_or_404(request: HttpRequest, pk: int) -> Conversation:
    try:
        return conversations.get_owned(request.user, pk)
    except ChatRejected:
        raise Http404("No such conversation.") from None


@require_GET
@member_required
def index(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    current = conversations.detail(_owned_or_404(request, pk)) if pk is not None else None
    limit = max_tokens_limit(request.user)
    config = {
        "conversation": current,
        "conversations": conversations.summaries(request.user),
        "models": model_choices(allowed_models(request.user)),
        "limits": {
            "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "max_system_chars": settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
            "max_tokens": limit,
            "max_tokens_default": min(settings.GENERATION_MAX_TOKENS_DEFAULT, limit),
            "temperature": TEMPERATURE_RANGE,
            "reasoning_efforts": REASONING_EFFORTS,
        },
    }
    context = {"chat_config": config, "current": current, "composer_actions": composer_actions(request)}
    return render(request, "chat/chat.html", context)


@require_GET
@member_required
def conversation_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"conversations": conversations.summaries(request.user, request.GET.get("q", ""))})


@require_GET
@member_required
def conversation_detail(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"conversation": conversations.detail(_owned_or_404(request, pk))})


@require_POST
@member_required
def conversation_rename(request: HttpRequest, pk: int) -> JsonResponse:
    _owned_or_404(request, pk)
    try:
        title = json.loads(request.body or b"{}").get("title")
    except (ValueError, AttributeError):
        title = None
    try:
        conversation = conversations.rename(request.user, pk, title)
    except ChatRejected as exc:
        return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=400)
    return JsonResponse({"id": conversation.pk, "title": str(conversation)})


@require_POST
@member_required
def conversation_delete(request: HttpRequest, pk: int) -> JsonResponse:
    _owned_or_404(request, pk)
    for answer_id in conversations.delete(request.user, pk):
        # Stop what was being written; its settlement finds the message gone and skips it.
        async_to_sync(streams.stop)(answer_id)
    return JsonResponse({"deleted": pk})


def recent_widget(request: HttpRequest) -> dict[str, Any]:
    """Context of the home page's widget of the user's recent conversations."""
    return {"conversations": conversations.recent(request.user)}


def failures_widget(request: HttpRequest) -> dict[str, Any]:
    """Context of the admins' home page widget: answers that failed and requests refused in the last day."""
    since = timezone.now() - timedelta(days=1)
    return {"failures": conversations.failures_since(since), "refusals": refusals_since(since)}
