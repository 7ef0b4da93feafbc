"""Keep staff flags in step with the Admins group; remember who signed up themselves and who chose a password."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import password_changed, password_reset, password_set, user_signed_up
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from accounts.models import PasswordChangeRequired, SelfSignUp
from accounts.roles import ADMINS

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
