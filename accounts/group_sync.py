"""Map a company directory's groups to portal groups at every sign-in (OpenID Connect and LDAP).

One mapping function serves both: the provider's group names (an OIDC claim, LDAP group
names or DNs) are looked up in the configured mapping, and the portal groups they name
become the user's groups (``PORTAL_SSO_GROUP_SYNC=replace``) or are added to them (``add``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction

from accounts.roles import ALL_ROLES

logger = logging.getLogger(__name__)


class SignInRefused(Exception):
    """The sign-in may not go on; ``message`` is the sentence shown to the person."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason


def mapped_groups(external: Iterable[str], mapping: Mapping[str, Sequence[str]]) -> set[str]:
    """Return the portal group names that the provider's groups ``external`` map to.

    Group names match exactly, and also without regard to case (directories differ on that).
    """
    folded = {key.casefold(): names for key, names in mapping.items()}
    portal: set[str] = set()
    for name in external:
        portal.update(mapping.get(name) or folded.get(name.casefold()) or ())
    return portal


def external_group_names(value: Any) -> list[str]:
    """Return a claim's groups as a list of names: a list, one string, or nothing (empty)."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list | tuple):
        return [str(item) for item in value if isinstance(item, str | int) and str(item)]
    return []


def sync_groups(user: Any, external: Iterable[str], mapping: Mapping[str, Sequence[str]], source: str) -> set[str]:
    """Give ``user`` the portal groups its provider groups map to; return the user's group names.

    An empty ``mapping`` leaves the groups alone (the portal manages them) and refuses no one.

    Raises :class:`SignInRefused` when ``PORTAL_SSO_REQUIRE_GROUP`` is on and no group maps;
    the caller then deactivates the account. A mapped group that does not exist (and is not
    one of the three roles, which are re-created) is skipped and logged: doctor --sso names it.
    """
    if not mapping:
        # No mapping for this source: its groups mean nothing here and the portal's own
        # groups stay as admins set them (replacing would strip every role at each sign-in).
        return set(user.groups.values_list("name", flat=True))
    external = list(external)
    wanted = mapped_groups(external, mapping)
    if settings.PORTAL_SSO_REQUIRE_GROUP and not wanted:
        raise SignInRefused(
            "Your account has no group that gives access to this portal. Ask your administrator to add you to one.",
            f"{source}: none of the groups {sorted(external)} is mapped to a portal group",
        )
    groups = []
    for name in sorted(wanted):
        group = (
            Group.objects.get_or_create(name=name)[0] if name in ALL_ROLES else Group.objects.filter(name=name).first()
        )
        if group is None:
            logger.warning("%s: the mapping names the portal group %r, which does not exist", source, name)
        else:
            groups.append(group)
    with transaction.atomic():
        if settings.PORTAL_SSO_GROUP_SYNC == "replace":
            user.groups.set(groups)
        else:
            user.groups.add(*groups)
    if hasattr(user, "_portal_roles"):
        del user._portal_roles
    logger.info("%s: %s signed in with groups %s", source, user.get_username(), sorted(g.name for g in groups))
    return {group.name for group in groups}
