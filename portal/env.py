"""Strict parsers for environment variables.

Every setting of the portal comes from the environment. A value that does not parse
stops start-up with an error naming the variable, so a typo is found at once and not
as a surprise hours later. Secrets can also be read from a file named by ``NAME_FILE``
(Docker and systemd credentials).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip()


def env_str(name: str, default: str) -> str:
    """Return the variable as text, or the default when it is unset or empty."""
    value = _raw(name)
    return value if value else default


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean; only true/false, yes/no, on/off, 1/0 are accepted."""
    value = _raw(name)
    if not value:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use true or false.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return an integer within the given bounds."""
    value = _raw(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """Return a finite float within the given bounds."""
    value = _raw(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={value!r} is not a finite number.")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    """Return one of the allowed words."""
    value = env_str(name, default)
    if value not in choices:
        allowed = ", ".join(choices)
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {allowed}.")
    return value


def env_list(name: str, default: Sequence[str]) -> list[str]:
    """Return a comma-separated list with empty items dropped; the default when it names none."""
    value = _raw(name) or ""
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or list(default)


def env_secret(name: str) -> str | None:
    """Return a secret from ``NAME`` or from the file named by ``NAME_FILE``.

    Setting both is an error, as is a ``NAME_FILE`` that cannot be read or is empty.
    """
    direct = _raw(name)
    file_name = _raw(f"{name}_FILE")
    if direct and file_name:
        raise ImproperlyConfigured(f"Set only one of {name} and {name}_FILE.")
    if file_name:
        try:
            secret = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc.strerror}.") from None
        if not secret:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} is empty.")
        return secret
    return direct or None


def env_url(name: str, schemes: Sequence[str]) -> str | None:
    """Return a URL whose scheme is one of ``schemes``, or None when unset."""
    value = env_secret(name)
    if value is None:
        return None
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must start with one of: {', '.join(s + '://' for s in schemes)}.")
    return value


def generated_secret(path: Path) -> str:
    """Return the secret stored in ``path``, generating it (mode 0600) if there is none yet.

    Several processes may start at once on an empty data directory: each writes a complete
    key to its own temporary file and hard-links it into place, which succeeds for exactly
    one of them; the others read the winner's key. Nobody ever reads a half-written file.
    """
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(64))
                handle.flush()
                os.fsync(handle.fileno())
            # FileExistsError: another process was first, and its key is the one to use.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return path.read_text(encoding="utf-8").strip()


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def env_host_patterns(name: str) -> list[str]:
    """Return a comma-separated list of host names, ``*.domain`` patterns and IP networks.

    Each item must be an IP network in CIDR form (``10.0.0.0/8``, ``fd00::/8``; host bits must
    be zero, so ``10.0.0.1/8`` is refused as a likely typo), a single IP address, a host name,
    or ``*.`` followed by a domain. Anything else stops start-up naming the item.
    """
    patterns = []
    for item in env_list(name, []):
        word = item.lower()
        try:
            patterns.append(str(ipaddress.ip_network(word, strict=True)))
            continue
        except ValueError as exc:
            if "/" in word or ":" in word or re.fullmatch(r"[0-9.]+", word):
                raise ImproperlyConfigured(f"{name}: {item!r} is not an IP network ({exc}).") from None
        host = word[2:] if word.startswith("*.") else word
        if not host or not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not a host name, a *.domain pattern or an IP network such as 10.0.0.0/8."
            )
        patterns.append(word)
    return patterns


def env_optional_int(name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """Return an integer within the given bounds, or None when the variable is unset or empty."""
    if not _raw(name):
        return None
    return env_int(name, 0, minimum=minimum, maximum=maximum)


def env_json_object(name: str) -> dict[str, Any]:
    """Return a JSON object from ``NAME`` or from the file named by ``NAME_FILE``; ``{}`` when unset.

    Text that is not JSON, or JSON that is not an object, is an error naming the variable.
    """
    value = env_secret(name)
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc.msg} at character {exc.pos}.") from None
    if not isinstance(parsed, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object ({{...}}), not {type(parsed).__name__}.")
    return parsed
