"""People's conversations: ownership, turns, history for the model, settlement and retention.

Synchronous and database-bound; the consumer calls these through ``database_sync_to_async``.
Every function that takes a conversation id takes the user too and answers ``not_found``
for someone else's conversation, exactly as for one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from chat.models import Conversation, Message
from inference.answers import LOST
from inference.audit_events import record_lost
from inference.generation import Outcome, Prepared, check_prompt, one_policy_read, prepare, settle_lost_usage
from inference.rejections import GenerationRejected
from inference.sampling import Sampling, parse_sampling
from inference.text_checks import storable_text

SOURCE = "chat"
TITLE_CHARS = 80
# The process writing an answer touches it every HEARTBEAT_SECONDS (chat/streams.py). An
# answer still "streaming" but untouched for LOST_AFTER_SECONDS has no live process: it is
# lost, and neither keeps its conversation busy nor from being purged.
HEARTBEAT_SECONDS = 5.0
LOST_AFTER_SECONDS = 30.0
# What a turn does: a new question, the last answer again, or the last question edited.
SEND, REGENERATE, EDIT = "send", "regenerate", "edit"


class ChatRejected(GenerationRejected):
    """A chat request refused before anything was saved (bad input, not found, busy)."""


@dataclass(frozen=True)
class Turn:
    """A started turn: the saved question, the answer being streamed, and the engine request."""

    conversation: Conversation
    created: bool
    user_message: Message
    answer: Message
    prepared: Prepared


def owned(user: Any) -> QuerySet[Conversation]:
    """Return the conversations ``user`` owns."""
    return Conversation.objects.filter(owner_id=user.pk)


def get_owned(user: Any, conversation_id: Any) -> Conversation:
    """Return the user's conversation, or raise ``not_found`` (also for a malformed id)."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise ChatRejected("not_found", "no such conversation")
    conversation = owned(user).filter(pk=conversation_id).first()
    if conversation is None:
        raise ChatRejected("not_found", "no such conversation")
    return conversation


def check_content(content: Any) -> str:
    """Return the message text, or raise ``empty_content`` / ``content_too_long`` / ``bad_request``."""
    if not isinstance(content, str):
        raise ChatRejected("bad_request", "content must be text")
    if not storable_text(content):
        raise ChatRejected("bad_request", "content contains characters that cannot be stored")
    if not content.strip():
        raise ChatRejected("empty_content", "the message is empty")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ChatRejected("content_too_long", f"the message is longer than {limit} characters", limit=limit)
    return content


def _merged_settings(conversation: Conversation, raw: Any, user: Any) -> tuple[dict[str, Any], Sampling]:
    """Apply ``params`` over the conversation's stored settings and validate the result.

    Keys left out keep their stored value; null means the default. Raises ``invalid_params``.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ChatRejected("invalid_params", "params must be an object", field="params")
    merged = {**conversation.settings_dict(), **raw}
    system = merged.pop("system") or ""
    if not storable_text(system):
        raise ChatRejected("invalid_params", "system must be text", field="system")
    limit = settings.CHAT_MAX_SYSTEM_PROMPT_CHARS
    if len(system) > limit:
        raise ChatRejected("invalid_params", f"system is longer than {limit} characters", field="system")
    sampling = parse_sampling(merged, user)
    stored = {
        "system_prompt": system,
        "model": sampling.model or "",
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens if merged.get("max_tokens") is not None else None,
        "reasoning_effort": sampling.reasoning_effort or "",
    }
    return stored, sampling


def prompt_messages(conversation: Conversation, history: list[Message]) -> list[dict[str, str]]:
    """Build the messages sent to the model: system prompt, questions, and earlier answers.

    Earlier answers go back without their reasoning (Harmony's rule for gpt-oss: only final
    answers are part of the next prompt). Answers that produced no text are left out.
    """
    messages = []
    if conversation.system_prompt.strip():
        messages.append({"role": "system", "content": conversation.system_prompt})
    for message in history:
        if message.role == Message.Role.ASSISTANT and not message.content:
            continue
        messages.append({"role": message.role, "content": message.content})
    return messages


def _title_for(content: str) -> str:
    first_line = content.strip().splitlines()[0].strip()
    return first_line if len(first_line) <= TITLE_CHARS else first_line[: TITLE_CHARS - 1] + "…"


@dataclass
class _Plan:
    """What a turn will do, read from the conversation as it is now (before anything is saved)."""

    conversation: Conversation
    created: bool
    stored: dict[str, Any]
    sampling: Sampling
    question: Message
    messages: list[dict[str, str]]


def _plan_turn(user: Any, kind: str, conversation_id: Any, text: str, params: Any, *, lock: bool) -> _Plan:
    """Read the conversation (locking its row when ``lock``) and work out the turn's messages."""
    if conversation_id is None and kind == SEND:
        conversation, history, created = Conversation(owner_id=user.pk, title=_title_for(text)), [], True
    else:
        pk = get_owned(user, conversation_id).pk
        rows = Conversation.objects.select_for_update() if lock else Conversation.objects
        conversation = rows.get(pk=pk)
        # An answer whose process died must not keep the conversation busy forever.
        _mark_lost(conversation.messages.all())
        history, created = list(conversation.messages.all()), False
    if any(message.status == Message.Status.STREAMING for message in history):
        raise ChatRejected("busy", "an answer is still being written in this conversation")
    stored, sampling = _merged_settings(conversation, params, user)
    if kind == SEND:
        earlier, question = history, Message(role=Message.Role.USER, content=text)
    else:
        earlier, question = _last_question(history)
        if kind == EDIT:
            question.content = text
    for name, value in stored.items():
        setattr(conversation, name, value)
    messages = prompt_messages(conversation, [*earlier, question])
    return _Plan(conversation, created, stored, sampling, question, messages)


def begin_turn(user: Any, kind: str, conversation_id: Any, content: Any, params: Any) -> Turn:
    """Validate a turn, pick an engine and save the question and an empty streaming answer.

    ``kind`` is ``send`` (``conversation_id`` None starts a conversation), ``regenerate``
    (the last answer again; ``content`` ignored) or ``edit`` (replace the last question and
    its answer). ``params`` override the conversation's stored settings and are stored.
    Raises :class:`ChatRejected` or :class:`GenerationRejected` (also ``refused_by_plugin``
    and ``plugin_failed`` from the plugins' checks) before saving anything.
    """
    with one_policy_read():  # the user's policy, asked for by each plan and the admission
        return _begin_turn(user, kind, conversation_id, content, params)


def _begin_turn(user: Any, kind: str, conversation_id: Any, content: Any, params: Any) -> Turn:
    text = check_content(content) if kind in (SEND, EDIT) else ""
    # The user's answers whose process died hold concurrency slots until they are swept.
    _mark_lost(Message.objects.filter(conversation__owner_id=user.pk))
    # The plugins' prompt checks run before the transaction: they may take seconds and write
    # audit events of their own, which must not wait behind (or roll back with) this
    # transaction's locks. Their verdict holds only for the messages they saw.
    plan = _plan_turn(user, kind, conversation_id, text, params, lock=False)
    checked = check_prompt(user, plan.messages, plan.sampling, source=SOURCE)
    with transaction.atomic():
        # Lock the row so two sockets cannot start two answers in one conversation.
        locked = _plan_turn(user, kind, conversation_id, text, params, lock=True)
        if locked.messages != plan.messages:
            raise ChatRejected("busy", "the conversation changed while your message was checked; send it again")
        conversation, question = locked.conversation, locked.question
        prepared = prepare(user.pk, locked.messages, locked.sampling, source=SOURCE, checked=checked)
        if locked.created:
            conversation.save()
        else:
            conversation.save(update_fields=[*locked.stored, "updated_at"])
        if question.pk is None:
            question.conversation = conversation
            question.save()
        else:
            # Regenerate and edit replace the answer that followed the question.
            conversation.messages.filter(pk__gt=question.pk).delete()
            if kind == EDIT:
                question.save(update_fields=["content"])
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            heartbeat_at=timezone.now(),
            model=prepared.target.served_model,
            request_id=prepared.request.request_id or "",
        )
    return Turn(conversation, locked.created, question, answer, prepared)


def _last_question(history: list[Message]) -> tuple[list[Message], Message]:
    """Split the history at its last question: (what came before, the question)."""
    questions = [index for index, message in enumerate(history) if message.role == Message.Role.USER]
    if not questions:
        raise ChatRejected("nothing_to_regenerate", "this conversation has no question yet")
    last = questions[-1]
    return history[:last], history[last]


def _settled_fields(outcome: Outcome) -> dict[str, Any]:
    """The one mapping from an outcome to the fields settlement stores on its answer."""
    return {
        "content": outcome.content,
        "reasoning": outcome.reasoning,
        "status": outcome.status,
        "model": outcome.model[:200],
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "usage_estimated": outcome.usage_estimated,
        "ttft_ms": outcome.ttft_ms,
        "duration_ms": outcome.duration_ms,
        "finish_reason": outcome.finish_reason[:32],
        "error_code": outcome.error_code[:40],
        "error_message": outcome.error_message[:500],
    }


def settled_answer(message_id: int, conversation_id: int, outcome: Outcome) -> Message:
    """Return the answer as settlement stores it for ``outcome`` (unsaved; nothing is written).

    The live ``done`` frame is built from this message, the re-loaded one from the stored
    row: both from the same fields, so they cannot disagree.
    """
    fields = _settled_fields(outcome)
    return Message(pk=message_id, conversation_id=conversation_id, role=Message.Role.ASSISTANT, **fields)


def finish_answer(message_id: int, outcome: Outcome) -> None:
    """Store a settled answer (inside the settlement transaction); a deleted one is skipped.

    An answer wrongly marked lost (its process answered too late) is still settled.
    """
    unsettled = Q(status=Message.Status.STREAMING) | Q(error_code=LOST)
    Message.objects.filter(unsettled, pk=message_id).update(**_settled_fields(outcome), finished_at=timezone.now())


def streaming_answer(user: Any, conversation_id: Any) -> Message | None:
    """Return the answer being written in the user's conversation, if any (``not_found`` if not theirs)."""
    conversation = get_owned(user, conversation_id)
    return conversation.messages.filter(status=Message.Status.STREAMING).order_by("-pk").first()


def _orphaned() -> Q:
    """Streaming answers with no sign of life from their process for ``LOST_AFTER_SECONDS``."""
    cutoff = timezone.now() - timedelta(seconds=LOST_AFTER_SECONDS)
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    return Q(status=Message.Status.STREAMING) & silent


def _mark_lost(messages: QuerySet[Message]) -> None:
    orphans = messages.filter(_orphaned()).values_list("pk", "conversation__owner_id", "model", "request_id")
    for pk, owner_id, model, request_id in orphans:
        marked = Message.objects.filter(_orphaned(), pk=pk).update(
            status=Message.Status.INTERRUPTED,
            error_code=LOST,
            error_message="the web process writing this answer stopped",
            finished_at=timezone.now(),
        )
        if marked:  # only the process that marked it settles it and writes the generation's event
            # Nobody else will settle it: give back its reserved tokens and concurrency slot
            # (the ledger before the audit chain, as everywhere).
            settle_lost_usage([request_id])
            record_lost(owner_id, SOURCE, model, request_id)


def touch(message_ids: list[int]) -> None:
    """Record that the process writing these answers is alive (see ``LOST_AFTER_SECONDS``)."""
    Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).update(heartbeat_at=timezone.now())


def settled_or_lost(message_id: int) -> Message | None:
    """Return the answer once it is no longer being written, or None while its process lives.

    An answer whose process stopped touching it is marked interrupted (``lost``) first; one
    with a recent heartbeat is left alone, however slow its process is to answer a socket.
    Raises ``Message.DoesNotExist`` when the answer was deleted.
    """
    _mark_lost(Message.objects.filter(pk=message_id))
    message = Message.objects.get(pk=message_id)
    return None if message.status == Message.Status.STREAMING else message


def summaries(user: Any, query: str = "") -> list[dict[str, Any]]:
    """Return the user's conversations for the sidebar, newest first, filtered by title."""
    if not storable_text(query):
        return []  # no stored title contains it (and PostgreSQL refuses NUL in a query)
    conversations = owned(user)
    if query.strip():
        conversations = conversations.filter(title__icontains=query.strip())
    return [
        {"id": conversation.pk, "title": str(conversation), "updated_at": conversation.updated_at.isoformat()}
        for conversation in conversations[:500]
    ]


def recent(user: Any, count: int = 5) -> list[Conversation]:
    """Return the user's ``count`` most recently updated conversations."""
    return list(owned(user).order_by("-updated_at")[:count])


def failures_since(since: datetime) -> list[dict[str, Any]]:
    """Return the answers that failed or were cut off since ``since``, counted by error code."""
    failed = Message.objects.filter(
        role=Message.Role.ASSISTANT,
        status__in=[Message.Status.ERROR, Message.Status.INTERRUPTED],
        created_at__gte=since,
    )
    rows = failed.values("status", "error_code").annotate(count=Count("pk")).order_by("-count", "error_code")
    return [{"status": row["status"], "code": row["error_code"] or "—", "count": row["count"]} for row in rows]


def detail(conversation: Conversation) -> dict[str, Any]:
    """Return a conversation with its settings and messages, as the chat page renders it."""
    return {
        "id": conversation.pk,
        "title": str(conversation),
        "settings": conversation.settings_dict(),
        "messages": [message.as_dict() for message in conversation.messages.all()],
    }


def rename(user: Any, conversation_id: int, title: Any) -> Conversation:
    """Rename the user's conversation; raise ``not_found`` or ``bad_request``."""
    conversation = get_owned(user, conversation_id)
    if not isinstance(title, str) or not title.strip():
        raise ChatRejected("bad_request", "the title is empty")
    if not storable_text(title):
        raise ChatRejected("bad_request", "the title contains characters that cannot be stored")
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def delete(user: Any, conversation_id: int) -> list[int]:
    """Delete the user's conversation; return the ids of answers that were still streaming."""
    conversation = get_owned(user, conversation_id)
    streaming = list(conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True))
    conversation.delete()
    return streaming


def purge_older_than(days: int) -> int:
    """Delete conversations not updated for ``days`` days; return how many were deleted.

    A conversation whose answer is still being written is kept, unless that answer is lost.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    cutoff = timezone.now() - timedelta(days=days)
    live = Message.objects.filter(status=Message.Status.STREAMING).exclude(_orphaned()).values("conversation_id")
    stale = Conversation.objects.filter(updated_at__lt=cutoff).exclude(pk__in=live)
    _, by_model = stale.delete()
    return by_model.get(Conversation._meta.label, 0)
