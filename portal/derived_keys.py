"""Encryption keys derived from ``SECRET_KEY``, one per purpose.

Secrets the portal must read back (external engines' API keys, MFA secrets) are stored
encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``), so a database dump
alone does not reveal them. The key comes from ``SECRET_KEY`` through HKDF with an info
string naming the purpose, which keeps each use apart from the others and from Django's own
signing. Changing ``SECRET_KEY`` makes everything stored this way unreadable.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def fernet_for(purpose: str) -> Fernet:
    """Return the Fernet keyed from ``SECRET_KEY`` for ``purpose`` (a fixed, distinct text)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        settings.SECRET_KEY.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))
