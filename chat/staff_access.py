"""Conversations are private: staff read one only by giving a reason, and that is audited.

Nobody but the owner sees a conversation's title, system prompt or messages anywhere else
(Django admin shows the owner, the model, dates and counts). An admin who must read one (a
complaint, an incident) opens :func:`read_for_staff` through the content view, which asks
for a reason and writes a ``content.viewed`` event with it before showing anything.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.roles import is_admin
from chat.conversations import ChatRejected, detail
from chat.models import Conversation
from inference.text_checks import storable_text
from portal.audit.trail import record

CONTENT_VIEWED = "content.viewed"
MIN_REASON = 10
MAX_REASON = 500
MAX_ID = 2**63 - 1


def check_reason(reason: Any) -> str:
    """Return the reason, stripped; raise ``ChatRejected("bad_request")`` when it is too short or long."""
    if not isinstance(reason, str) or not storable_text(reason) or len(reason.strip()) < MIN_REASON:
        raise ChatRejected("bad_request", f"give a reason of at least {MIN_REASON} characters")
    if len(reason) > MAX_REASON:
        raise ChatRejected("bad_request", f"the reason is longer than {MAX_REASON} characters")
    return reason.strip()


def read_for_staff(staff: Any, conversation_id: int, reason: Any, *, ip: str) -> dict[str, Any]:
    """Record that ``staff`` reads the conversation and why; return its content.

    Raises ``PermissionError`` for anyone but an admin, ``ChatRejected("not_found")`` for an
    unknown conversation and ``ChatRejected("bad_request")`` for a missing reason; nothing is
    recorded or shown then.
    """
    if not is_admin(staff):
        raise PermissionError("only admins may read other people's conversations")
    text = check_reason(reason)
    if not 0 < conversation_id <= MAX_ID:  # beyond a 64-bit key the database would refuse the query
        raise ChatRejected("not_found", "no such conversation")
    with transaction.atomic():
        conversation = Conversation.objects.select_related("owner").filter(pk=conversation_id).first()
        if conversation is None:
            raise ChatRejected("not_found", "no such conversation")
        content = detail(conversation)
        record(
            CONTENT_VIEWED,
            actor=staff,
            ip=ip,
            target=f"conversation {conversation.pk} of {conversation.owner.get_username()}",
            data={"reason": text, "conversation": conversation.pk, "owner_id": conversation.owner_id},
        )
    return content
