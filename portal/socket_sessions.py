"""Whether an open WebSocket's sign-in still holds: its session, the password and the role.

A socket is authenticated once, at the handshake, from the session cookie. Everything that
ends a sign-in over HTTP (logout, a password change, session expiry, deactivation) must end
it on the socket too, and a role change must take away what the role gave. So:

- every socket of a user joins one channel group, :func:`user_group`;
- whatever changes the account calls :func:`recheck_user_sockets`, which tells that group to
  check again (``accounts/signals.py``, ``accounts/deprovision.py``);
- the consumer checks again on that event and before every frame it receives
  (``portal/consumers.py``), with :func:`session_user`, and closes with
  ``CLOSE_UNAUTHENTICATED`` (4401) or ``CLOSE_FORBIDDEN`` (4403).

Close codes are in the private range (4000-4999), documented in docs/websocket.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

# The channel-layer event a user's sockets get when their account changed; the consumer's
# handler is the method of the same name with the dot as an underscore.
RECHECK_EVENT = "user.recheck"


def user_group(user_id: int) -> str:
    """Return the channel group every socket of the user joins (one group for every broadcast)."""
    return f"user.{user_id}"


def recheck_user_sockets(user_id: int, ended_session: str | None = None) -> None:
    """Tell every open socket of the user, in every web process, to check its sign-in again.

    ``ended_session`` names a session that is being ended right now (a logout sends the
    signal before it deletes the session): its sockets close without looking it up.
    Without a channel layer there are no sockets, and nothing happens.
    """
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": RECHECK_EVENT, "ended_session": ended_session})


def _hash_matches(user: Any, session_hash: Any) -> bool:
    # As django.contrib.auth.get_user does, SECRET_KEY_FALLBACKS included, but read-only:
    # this check must not rotate or flush the session the browser still uses over HTTP.
    if not isinstance(session_hash, str) or not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(session_hash, other) for other in user.get_session_auth_fallback_hash())


def session_user(session_key: str | None, user_id: int) -> Any | None:
    """Return the user, freshly loaded, when ``session_key`` still signs in ``user_id``; else None.

    Still signed in means: the session exists and has not expired (the session store's own
    rule), it names this user and an authentication backend the portal uses, the account is
    active, and the session's auth hash matches the current password (a password change
    ends every other session, as Django does over HTTP). Nothing is written.
    """
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user_id):
        return None
    if data.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not _hash_matches(user, data.get(HASH_SESSION_KEY)):
        return None
    return user
