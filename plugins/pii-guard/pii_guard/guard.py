"""The prompt check: find personal data with the portal's redactors, then mask it or refuse.

Runs as an ``inference.before_generate`` hook. It looks at the text people wrote (user and
system messages; the model's own earlier answers are left alone), with every redactor of
the portal (``portal.audit.redaction.registered()``: the built-in ones and those plugins
added), the same ones the audit trail uses. What it does depends
on the user's groups (see :mod:`pii_guard.policy`):

- ``mask``: each finding is replaced by ``[REDACTED:<kind>]`` in what is sent to the model,
  and the user is told what was masked and why;
- ``block``: the request is refused with the kinds found, and nothing is sent;
- ``off``: nothing is checked.

Every intervention is an audit event (``pii_guard.masked`` or ``pii_guard.blocked``) with the
kinds and counts, never the text. If the event cannot be written the hook fails, and the
portal refuses the request (fail closed): an intervention is never left unaudited.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pii_guard import policy
from portal.audit.redaction import registered
from portal.audit.trail import record
from portal.plugins import PromptCheck

CHECKED_ROLES = ("user", "system")
KIND_WORDS = {
    "phone": ("phone number", "phone numbers"),
    "email": ("e-mail address", "e-mail addresses"),
    "cn_resident_id": ("resident ID number", "resident ID numbers"),
    "card": ("card number", "card numbers"),
    "iban": ("IBAN", "IBANs"),
    "api_key": ("API key", "API keys"),
    "bearer_token": ("access token", "access tokens"),
    "private_key": ("private key", "private keys"),
}


def masked(text: str, kinds: frozenset[str] | None) -> tuple[str, Counter[str]]:
    """Return ``text`` with the findings of the portal's redactors replaced, and what was found."""
    found: Counter[str] = Counter()
    for redactor in registered():
        if kinds is not None and redactor.name not in kinds:
            continue
        marker = f"[REDACTED:{redactor.name}]"
        replaced = redactor.apply(text)
        added = replaced.count(marker) - text.count(marker)
        if added > 0:
            found[redactor.name] += added
        text = replaced
    return text, found


def describe(found: Counter[str]) -> str:
    """Say what was found in words: ``1 phone number and 2 e-mail addresses``."""
    parts = []
    for kind, count in sorted(found.items()):
        one, many = KIND_WORDS.get(kind, (kind.replace("_", " "), kind.replace("_", " ") + "s"))
        parts.append(f"{count} {one if count == 1 else many}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def check_prompt(check: PromptCheck) -> None:
    """Mask or refuse personal data in ``check.messages`` as the user's group policy says."""
    mode = policy.mode_for(check.groups)
    if mode == policy.OFF:
        return
    kinds = policy.kinds()
    found: Counter[str] = Counter()
    messages = []
    for message in check.messages:
        if message["role"] in CHECKED_ROLES:
            text, counts = masked(message["content"], kinds)
            found += counts
            message = {**message, "content": text}
        messages.append(message)
    if not found:
        return
    what = describe(found)
    _record(check, mode, found)
    if mode == policy.BLOCK:
        check.refuse(
            f"Your message was not sent: it contains personal data ({what}), which your group may not "
            "send to the model. Remove it and send the message again."
        )
    check.messages = messages
    check.notify(
        f"Masked {what} before your message reached the model: personal data is not sent to the model "
        "for your group. Your own copy of the conversation keeps what you wrote."
    )


def _record(check: PromptCheck, mode: str, found: Counter[str]) -> Any:
    outcome = "blocked" if mode == policy.BLOCK else "masked"
    return record(
        f"pii_guard.{outcome}",
        actor=check.user,
        target=check.source,
        outcome=outcome,
        channel=check.source,
        model=check.model or "",
        data={"kinds": dict(sorted(found.items())), "policy": mode},
    )
