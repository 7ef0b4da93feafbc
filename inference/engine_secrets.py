"""The API keys of external engines: encrypted in the database, or read from a file at use.

The key is encrypted with Fernet under a key derived from ``SECRET_KEY``
(:mod:`portal.derived_keys`), so a database dump alone does not reveal it. Changing
``SECRET_KEY`` makes stored keys unreadable: the probe then reports the engine as unauthorized
with that reason, and registering it again stores the key anew.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from inference.models import EngineConfig
from portal.derived_keys import fernet_for

# Longest key accepted: vLLM keys and gateway tokens (JWTs included) are far shorter.
MAX_KEY_LENGTH = 4096


class EngineKeyError(Exception):
    """The engine's API key cannot be had; ``message`` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _fernet() -> Fernet:
    return fernet_for("portal external engine api key")


def check_api_key(key: str) -> str:
    """Return ``key`` stripped; raise :class:`EngineKeyError` when it cannot be a bearer token."""
    key = key.strip()
    if not key:
        raise EngineKeyError("The API key is empty.")
    if len(key) > MAX_KEY_LENGTH or any(char.isspace() or not char.isprintable() for char in key):
        raise EngineKeyError("The API key must be one line of printable characters without spaces.")
    return key


def encrypt_api_key(key: str) -> str:
    """Return the Fernet token of ``key`` (checked with :func:`check_api_key`)."""
    return _fernet().encrypt(check_api_key(key).encode()).decode()


def read_key_file(path: str) -> str:
    """Return the key stored in the file ``path``; raise :class:`EngineKeyError` when unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise EngineKeyError(f"The API key file {path} cannot be read: {reason}.") from None
    return check_api_key(text)


def engine_api_key(config: EngineConfig) -> str:
    """Return the API key to send to ``config`` ("" when it needs none).

    Raises :class:`EngineKeyError` when the key file cannot be read or the stored key cannot
    be decrypted (``SECRET_KEY`` changed since it was stored).
    """
    if config.api_key_file:
        return read_key_file(config.api_key_file)
    if not config.api_key_encrypted:
        return ""
    try:
        return _fernet().decrypt(config.api_key_encrypted.encode()).decode()
    except InvalidToken:
        raise EngineKeyError(
            "The stored API key cannot be decrypted: PORTAL_SECRET_KEY changed since it was stored. "
            f"Register the engine again: `python manage.py engine add-external {config.name} --replace ...`."
        ) from None
