"""allauth's MFA adapter: TOTP secrets and recovery-code seeds are stored encrypted.

allauth passes every MFA secret through ``encrypt``/``decrypt`` on its way to and from the
database. They are sealed with Fernet under a key derived from ``SECRET_KEY``
(:mod:`portal.derived_keys`), so a copy of the database (a backup, a leaked dump) no longer
lets anyone compute an admin's codes. Migration 0005 sealed the secrets stored before.
"""

from __future__ import annotations

import base64
import logging
import secrets

from allauth.mfa.adapter import DefaultMFAAdapter
from cryptography.fernet import InvalidToken

from portal.derived_keys import fernet_for

logger = logging.getLogger(__name__)

# Marks a sealed value, so that the migration can tell them from the plaintext of old rows.
SEALED_PREFIX = "fernet:"
_PURPOSE = "portal mfa secret"


def seal(text: str) -> str:
    """Return ``text`` encrypted for storage, marked with :data:`SEALED_PREFIX`."""
    return SEALED_PREFIX + fernet_for(_PURPOSE).encrypt(text.encode()).decode()


def unseal(stored: str) -> str | None:
    """Return the text :func:`seal` stored, or None when ``stored`` is not one it can read."""
    if not stored.startswith(SEALED_PREFIX):
        return None
    try:
        return fernet_for(_PURPOSE).decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
    except InvalidToken:
        return None


class PortalMFAAdapter(DefaultMFAAdapter):
    """Encrypt MFA secrets at rest."""

    def encrypt(self, text: str) -> str:
        return seal(text)

    def decrypt(self, encrypted_text: str) -> str:
        text = unseal(encrypted_text)
        if text is None:
            logger.error(
                "An MFA secret cannot be decrypted: PORTAL_SECRET_KEY changed since it was stored. "
                "Restore the old key, or delete the user's authenticators (admin > MFA > Authenticators) "
                "so that they enrol again."
            )
            # Fail closed: a random secret matches no code anyone can type.
            return base64.b32encode(secrets.token_bytes(20)).decode()
        return text
