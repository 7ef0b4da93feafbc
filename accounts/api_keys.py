"""Personal API keys: create (the secret is shown once), authenticate a request, revoke.

A key looks like ``lp_1a2b3c4d_<43 characters>``: ``lp_1a2b3c4d`` is its prefix (stored in
clear, unique, shown in lists and on audit events) and the rest is 256 random bits. Only an
HMAC-SHA256 of the whole key is stored, keyed with a key derived from ``SECRET_KEY``. A slow
password hash would add nothing: it protects guessable secrets, and 256 random bits cannot be
guessed; but it would cost tens of milliseconds on every API request. The HMAC's key means a
copy of the database alone is not enough to check a guessed key either. Rotating
``SECRET_KEY`` invalidates every key unless the old value is kept in ``SECRET_KEY_FALLBACKS``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import ApiKey
from accounts.policies import served_model_names
from accounts.roles import is_member

KEY_PATTERN = re.compile(r"(lp_[0-9a-f]{8})_([A-Za-z0-9_-]{43})")
PREFIX_PATTERN = re.compile(r"lp_[0-9a-f]{8}")
# last_used_at is written at most this often: one write per request would make every API
# call a database write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_EXPIRY_DAYS = 3650
MAX_NAME_CHARS = 100
_SALT = "accounts.api_keys"


class ApiKeyInvalid(Exception):
    """A key that cannot be created as asked: ``field`` names the bad input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ApiKeyRefused(Exception):
    """A request whose key does not authenticate.

    ``code`` is one of ``missing_key``, ``malformed_header``, ``invalid_key`` (unknown key,
    wrong secret), ``revoked_key``, ``expired_key``, ``inactive_owner`` (the owner was
    deactivated) or ``not_member`` (the owner lost the role that may use the API).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _digest(key: str, secret: str | bytes) -> str:
    return salted_hmac(_SALT, key, secret=secret, algorithm="sha256").hexdigest()


def _matches(key: str, stored: str) -> bool:
    # SECRET_KEY_FALLBACKS: keys made before a rotation keep working while the old value is listed.
    candidates = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return any(constant_time_compare(_digest(key, secret), stored) for secret in candidates)


def _clean_models(models: Iterable[str]) -> list[str]:
    wanted = sorted({name.strip() for name in models if name.strip()})
    known = set(served_model_names())
    unknown = [name for name in wanted if name not in known]
    if unknown:
        served = ", ".join(sorted(known)) or "none"
        raise ApiKeyInvalid("models", f"no engine serves {unknown[0]!r} (served: {served})")
    return wanted


def create_key(
    owner: Any, name: str, *, expires_in_days: int | None = None, models: Iterable[str] = ()
) -> tuple[ApiKey, str]:
    """Create a key for ``owner`` and return it with its secret, which is never shown again.

    ``models`` limits the key to those served model names (empty: every model the owner may
    use). Raises :class:`ApiKeyInvalid` for an empty or long name, an expiry outside 1 to
    3650 days, a model no engine serves, or an owner who is inactive or not a member.
    """
    name = (name or "").strip()
    if not name:
        raise ApiKeyInvalid("name", "give the key a name")
    if len(name) > MAX_NAME_CHARS:
        raise ApiKeyInvalid("name", f"the name is longer than {MAX_NAME_CHARS} characters")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ApiKeyInvalid("expires", f"the expiry must be 1 to {MAX_EXPIRY_DAYS} days")
    if not owner.is_active or not is_member(owner):
        raise ApiKeyInvalid("owner", f"{owner.get_username()} is not an active member and cannot have API keys")
    model_names = _clean_models(models)
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    while True:
        prefix = f"lp_{secrets.token_hex(4)}"
        secret = f"{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    owner=owner,
                    name=name,
                    prefix=prefix,
                    secret_hash=_digest(secret, settings.SECRET_KEY),
                    model_names=model_names,
                    expires_at=expires_at,
                )
        except IntegrityError:
            # 32 random bits of prefix: a collision is rare, and simply drawn again.
            continue
        return key, secret


def authenticate(header: str | None) -> ApiKey:
    """Return the key of an ``Authorization: Bearer <key>`` header, with its owner loaded.

    Raises :class:`ApiKeyRefused`. The state of a key (revoked, expired, owner inactive) is
    only told to someone who showed its whole secret. Touches ``last_used_at`` at most once
    a minute.
    """
    if not header:
        raise ApiKeyRefused("missing_key", "no API key: send the header 'Authorization: Bearer <key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiKeyRefused("malformed_header", "the Authorization header must be 'Bearer <key>'")
    match = KEY_PATTERN.fullmatch(token.strip())
    if match is None:
        raise ApiKeyRefused("invalid_key", "this is not a portal API key")
    key = ApiKey.objects.select_related("owner").filter(prefix=match.group(1)).first()
    if key is None or not _matches(match.group(0), key.secret_hash):
        raise ApiKeyRefused("invalid_key", "unknown API key")
    now = timezone.now()
    if key.revoked_at is not None:
        raise ApiKeyRefused("revoked_key", f"the API key {key.prefix} was revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyRefused("expired_key", f"the API key {key.prefix} expired on {key.expires_at:%Y-%m-%d %H:%M} UTC")
    if not key.owner.is_active:
        raise ApiKeyRefused("inactive_owner", "the owner of this API key is deactivated")
    if not is_member(key.owner):
        raise ApiKeyRefused("not_member", "the owner of this API key may no longer use the API")
    _touch(key, now)
    return key


def _touch(key: ApiKey, now: datetime) -> None:
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional: of several processes seeing the same stale time, one writes.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


def allows_model(key: ApiKey, model: str) -> bool:
    """Return whether ``key`` may be used for the served model ``model``."""
    return not key.model_names or model in key.model_names


def keys_of(owner: Any) -> QuerySet[ApiKey]:
    """Return ``owner``'s keys, newest first (revoked ones included)."""
    return ApiKey.objects.filter(owner_id=owner.pk)


def find(prefix: str) -> ApiKey:
    """Return the key with ``prefix``; raises :class:`ApiKeyInvalid` for a malformed or unknown one."""
    prefix = prefix.strip()
    if PREFIX_PATTERN.fullmatch(prefix) is None:
        raise ApiKeyInvalid("prefix", f"{prefix[:20]!r} is not a key prefix (it looks like lp_1a2b3c4d)")
    key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    if key is None:
        raise ApiKeyInvalid("prefix", f"no API key has the prefix {prefix}")
    return key


def revoke(key: ApiKey) -> bool:
    """Revoke ``key`` at once; return False when it was already revoked."""
    now = timezone.now()
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if updated:
        key.revoked_at = now
    return bool(updated)


def status(key: ApiKey) -> str:
    """Return ``active``, ``revoked`` or ``expired``, as lists show it."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return "expired"
    return "active"
