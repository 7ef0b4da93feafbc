"""Redaction of personal data and secrets in text (audit content, log lines).

Each redactor finds candidates with a regular expression and keeps only those its check
accepts (Luhn for cards, mod 97 for IBANs, the ISO 7064 check character for mainland-China
resident IDs), so near-misses such as a 15-digit order number or an ID with a wrong check
character stay as they are. Redactors run in :func:`registered` order; plugins add theirs
with :func:`register`, which adds to the ``redactors`` store of ``portal.registry``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from portal.registry import registry


@dataclass(frozen=True)
class Redactor:
    """Replace every match of ``pattern`` that ``check`` accepts with ``[REDACTED:<name>]``."""

    name: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    order: int = 100

    def apply(self, text: str) -> str:
        """Return ``text`` with the accepted matches replaced."""

        def replace(match: re.Match[str]) -> str:
            found = match.group(0)
            if self.check is not None and not self.check(found):
                return found
            return f"[REDACTED:{self.name}]"

        return self.pattern.sub(replace, text)


def luhn_ok(candidate: str) -> bool:
    """Return whether the digits of ``candidate`` (13-19 of them) pass the Luhn check."""
    digits = [int(char) for char in candidate if char.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """Return whether ``candidate`` (spaces allowed) is an IBAN with a valid mod-97 check."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_resident_id_ok(candidate: str) -> bool:
    """Return whether an 18-character mainland-China resident ID has a valid check character."""
    body, check = candidate[:17], candidate[17].upper()
    total = sum(int(digit) * weight for digit, weight in zip(body, _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == check


_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
# Prefixed keys: OpenAI/Anthropic-style sk-, GitHub, Slack, AWS access keys, Google API keys,
# and the portal's own personal keys (SEAM(api keys): their prefix comes with the API issue).
_API_KEY = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|lp[_-][A-Za-z0-9_-]{20,})"
)
# key=value / "key": "value" pairs whose name says secret.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])((?:api[_-]?key|secret|password|passwd|token|access[_-]?key)[\"']?\s*[:=]\s*[\"']?)"
    r"([^\s\"',;]{6,})"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Region (6 digits), birth date (YYYYMMDD), sequence (3), check character (digit or X).
_CN_ID = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])"
)
_CARD = re.compile(r"(?<![\d.-])(?:\d[ -]?){12,18}\d(?![\d.-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
# +CC then 6-14 more digits, spaces, dots or dashes allowed between groups.
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w])")
# Mainland-China mobile: 1[3-9] and 9 more digits, alone (not inside a longer number).
_CN_MOBILE = re.compile(r"(?<![\d.+-])1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![\d.-])")


def _phone_ok(candidate: str) -> bool:
    digits = sum(char.isdigit() for char in candidate)
    return 8 <= digits <= 15


_builtin: tuple[Redactor, ...] = (
    Redactor("private_key", _PEM, order=10),
    Redactor("bearer_token", _BEARER, order=20),
    Redactor("api_key", _API_KEY, order=30),
    Redactor("email", _EMAIL, order=40),
    Redactor("cn_resident_id", _CN_ID, cn_resident_id_ok, order=50),
    Redactor("iban", _IBAN, iban_ok, order=60),
    Redactor("card", _CARD, luhn_ok, order=70),
    Redactor("phone", _PHONE_INTL, _phone_ok, order=80),
    Redactor("phone", _CN_MOBILE, order=90),
)


def _secret_value(match: re.Match[str]) -> str:
    return f"{match.group(1)}[REDACTED:secret]"


def register(redactor: Redactor) -> None:
    """Add a redactor (a plugin's, from its ``ready()``): the registry's ``redactors`` store."""
    registry.add("redactors", redactor)


def registered() -> list[Redactor]:
    """Return the built-in redactors and the registered ones, in the order they run."""
    return sorted([*_builtin, *registry["redactors"]], key=lambda item: item.order)


def redact(text: str) -> str:
    """Return ``text`` with every registered kind of personal data and secret replaced.

    Never raises for any string; ``[REDACTED:<kind>]`` marks each replacement.
    """
    if not text:
        return text
    text = _SECRET_ASSIGNMENT.sub(_secret_value, text)
    for redactor in registered():
        text = redactor.apply(text)
    return text
