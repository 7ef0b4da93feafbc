"""What accounts writes to the audit trail: role changes, (de)activation, password changes.

Also grants the trail's read permission (``audit.view_event``) to the Auditors and Admins
groups after every migrate: the portal gates its auditor pages with the permission and
cannot know the roles (it never imports this app).
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_migrate, pre_save
from django.dispatch import receiver

from accounts.roles import ADMINS, AUDITORS
from portal.audit.trail import record_in_context

User = get_user_model()
ROLE_ADDED = "user.role_added"
ROLE_REMOVED = "user.role_removed"
ACTIVATED = "user.activated"
DEACTIVATED = "user.deactivated"
PASSWORD_CHANGED = "auth.password_changed"  # noqa: S105 - an action name


@receiver(post_migrate)
def grant_audit_permission(sender: AppConfig, **kwargs: Any) -> None:
    permission = Permission.objects.filter(content_type__app_label="audit", codename="view_event").first()
    if permission is None:
        return  # the audit app's permissions are created by its own post_migrate, before or after this
    for name in (AUDITORS, ADMINS):
        Group.objects.get_or_create(name=name)[0].permissions.add(permission)


@receiver(m2m_changed, sender=User.groups.through)
def record_role_change(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if action not in ("post_add", "post_remove") or not pk_set:
        return
    name = ROLE_ADDED if action == "post_add" else ROLE_REMOVED
    if reverse:
        # Changed from the group's side: pk_set holds users.
        for user in User.objects.filter(pk__in=pk_set):
            record_in_context(name, target=user.get_username(), data={"groups": [instance.name]})
        return
    groups = sorted(Group.objects.filter(pk__in=pk_set).values_list("name", flat=True))
    record_in_context(name, target=instance.get_username(), data={"groups": groups})


@receiver(pre_save, sender=User)
def record_account_change(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (update_fields is not None and not {"is_active", "password"} & set(update_fields)):
        return  # a new user, or a save that cannot change either (e.g. last_login)
    before = User.objects.filter(pk=instance.pk).values("is_active", "password").first()
    if before is None:
        return
    if before["is_active"] != instance.is_active:
        record_in_context(ACTIVATED if instance.is_active else DEACTIVATED, target=instance.get_username())
    if before["password"] != instance.password:
        record_in_context(PASSWORD_CHANGED, target=instance.get_username())
