"""Cut a user off at once: sessions, open sockets and (through ``is_active``) API keys.

Runs whenever an account goes from active to inactive, whoever did it (an admin in Django
admin, a script, or a sign-in refused by the group mapping, see :func:`deactivate`). API keys
need nothing here: their check reads ``owner.is_active`` on every request.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from portal.socket_sessions import recheck_user_sockets

logger = logging.getLogger(__name__)
User = get_user_model()


def delete_sessions(user_id: int) -> int:
    """Delete every live session of the user; return how many there were.

    The database session store cannot be filtered by user, so each live session is decoded;
    this runs only when an account is cut off.
    """
    doomed = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if str(session.get_decoded().get("_auth_user_id")) == str(user_id)
    ]
    Session.objects.filter(pk__in=doomed).delete()
    return len(doomed)


def close_sockets(user_id: int) -> None:
    """Close every open WebSocket of the user (in every web process, through the channel layer).

    The sockets check their sign-in again and find the account inactive and the sessions gone.
    """
    recheck_user_sockets(user_id)


def cut_off(user_id: int) -> None:
    """Delete the user's sessions and close their sockets, once the current transaction commits."""

    def run() -> None:
        count = delete_sessions(user_id)
        close_sockets(user_id)
        logger.info("user %s cut off: %d session(s) deleted, sockets closed", user_id, count)

    transaction.on_commit(run)


def deactivate(user: Any, reason: str) -> None:
    """Deactivate ``user`` (an admin can reactivate them) and cut them off; ``reason`` goes to the log."""
    logger.warning("deactivating %s: %s", user.get_username(), reason)
    user.is_active = False
    user.save(update_fields=["is_active"])  # the post_save receiver cuts them off


@receiver(pre_save, sender=User)
def remember_was_active(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    instance._portal_was_active = User.objects.filter(pk=instance.pk, is_active=True).exists()


@receiver(post_save, sender=User)
def cut_off_when_deactivated(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not created and getattr(instance, "_portal_was_active", False) and not instance.is_active:
        cut_off(instance.pk)
    instance._portal_was_active = instance.is_active
