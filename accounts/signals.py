"""Keep staff flags in step with the Admins group; remember who signed up themselves and who
chose a password; tell open sockets when a sign-in ends or a role changes (portal/socket_sessions.py)."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import password_changed, password_reset, password_set, user_signed_up
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver

from accounts.models import PasswordChangeRequired, SelfSignUp
from accounts.roles import ADMINS
from portal.socket_sessions import recheck_user_sockets

User = get_user_model()


def _sync_staff(user_ids: set[int]) -> None:
    admins = set(User.objects.filter(pk__in=user_ids, groups__name=ADMINS).values_list("pk", flat=True))
    User.objects.filter(pk__in=admins).update(is_staff=True, is_superuser=True)
    User.objects.filter(pk__in=user_ids - admins).update(is_staff=False, is_superuser=False)


@receiver(m2m_changed, sender=User.groups.through)
def groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if reverse:
        # Changed from the group's side: pk_set holds users (None on clear).
        if isinstance(instance, Group) and instance.name == ADMINS:
            if pk_set is None:
                pk_set = set(User.objects.filter(is_superuser=True).values_list("pk", flat=True))
            _sync_staff(set(pk_set))
        return
    _sync_staff({instance.pk})
    instance.refresh_from_db(fields=["is_staff", "is_superuser"])


@receiver(user_signed_up)
def remember_self_sign_up(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if kwargs.get("sociallogin") is not None:
        return  # made at a company sign-in: the provider vouched for the person
    # Sent before the first login stage runs, so the new user is asked to verify at once.
    SelfSignUp.objects.get_or_create(user=user)


@receiver(password_changed)
@receiver(password_set)
@receiver(password_reset)
def forget_required_password_change(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # The user chose this password themselves: the printed one is gone.
    PasswordChangeRequired.objects.filter(user=user).delete()


# --- Open WebSockets follow the account (docs/websocket.md, "Staying signed in") ---------------


def _recheck_after_commit(user_ids: set[int]) -> None:
    # After the commit, or a socket could re-read the account before the change is visible.
    def run() -> None:
        for user_id in user_ids:
            recheck_user_sockets(user_id)

    transaction.on_commit(run)


@receiver(user_logged_out)
def close_sockets_of_the_ended_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None or request is None:
        return
    # Sent before logout() deletes the session: name it, so its sockets need not look it up.
    ended = getattr(getattr(request, "session", None), "session_key", None)
    recheck_user_sockets(user.pk, ended_session=ended)


@receiver(pre_save, sender=User)
def remember_password_hash(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    instance._portal_old_password = User.objects.filter(pk=instance.pk).values_list("password", flat=True).first()


@receiver(post_save, sender=User)
def recheck_sockets_after_a_password_change(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    old = getattr(instance, "_portal_old_password", None)
    instance._portal_old_password = None
    if not created and old is not None and old != instance.password:
        _recheck_after_commit({instance.pk})


@receiver(m2m_changed, sender=User.groups.through)
def recheck_sockets_after_a_role_change(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if reverse and action == "pre_clear":
        # A group emptied from its side: the members are only known before the clear.
        instance._portal_cleared_users = set(instance.user_set.values_list("pk", flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        _recheck_after_commit({instance.pk})
    elif action == "post_clear":
        _recheck_after_commit(getattr(instance, "_portal_cleared_users", set()))
    else:
        _recheck_after_commit(set(pk_set or ()))
