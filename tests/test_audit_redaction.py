"""Redaction: personal data and secrets are replaced; near-misses stay exactly as they were."""

from __future__ import annotations

import json
import logging
import re

import pytest

from portal.audit.logs import JsonFormatter
from portal.audit.redaction import Redactor, redact, registered
from portal.audit.request_context import set_request_id
from portal.registry import registry

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v5\nabcd==\n-----END RSA PRIVATE KEY-----"

FOUND = [
    ("write to alice.smith+test@example.co.uk today", "email"),
    ("call +44 20 7946 0958 now", "phone"),
    ("US office: +1 (415) 555-2671", "phone"),
    ("手机 13800138000 请回电", "phone"),
    ("mobile 138 0013 8000", "phone"),
    ("ID 11010519491231002X on file", "cn_resident_id"),
    ("身份证号 320106198506150415。", "cn_resident_id"),
    ("card 4111 1111 1111 1111 exp 12/29", "card"),
    ("card 5500-0000-0000-0004", "card"),
    ("IBAN GB82 WEST 1234 5698 7654 32 please", "iban"),
    ("pay to DE89370400440532013000", "iban"),
    ("key sk-proj-4f9XbT2q8LmN0pRsTuVwXyZ12345", "api_key"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "api_key"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "bearer_token"),
    (f"here is my key {PEM} thanks", "private_key"),
    ('config {"api_key": "hunter2hunter2"}', "secret"),
]

NEAR_MISSES = [
    "ID 320106198506150416 has a wrong check character",
    "order number 202403150012345 shipped",
    "meeting on 2024-03-15 at 10:30",
    "running version 3.11.13 of the portal",
    "build 1.13800138000.2",
    "call extension 12345678901",
    "the range is 4111-1112",
    "an email-like string user@localhost",
    "GB82 is not an IBAN on its own",
]


@pytest.mark.parametrize(("text", "kind"), FOUND)
def test_personal_data_and_secrets_are_redacted(text: str, kind: str) -> None:
    redacted = redact(text)
    assert f"[REDACTED:{kind}]" in redacted
    # Nothing of the secret's distinctive digits or letters survives.
    for secret in re.findall(r"[0-9]{6,}|sk-\S+|ghp_\S+|hunter2|MIIE", text):
        assert secret not in redacted


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_stay_untouched(text: str) -> None:
    assert redact(text) == text


def test_a_plugin_can_add_a_redactor_through_the_registry() -> None:
    employee = Redactor("employee_id", re.compile(r"\bEMP-\d{6}\b"), order=95)
    before = registry["redactors"]
    # Plugins call register() in ready(); after start-up a test swaps the store instead.
    registry.replace("redactors", [*before, employee])
    try:
        assert employee in registered()
        assert redact("ask EMP-123456 or bob@example.com") == "ask [REDACTED:employee_id] or [REDACTED:email]"
    finally:
        registry.replace("redactors", before)
    assert redact("ask EMP-123456") == "ask EMP-123456"


def test_log_lines_are_json_with_the_request_id_and_redacted() -> None:
    set_request_id("req-12345678")
    record = logging.LogRecord("portal.test", logging.INFO, __file__, 1, "user %s failed", ("bob@example.com",), None)
    line = json.loads(JsonFormatter().format(record))
    set_request_id("")
    assert line["request_id"] == "req-12345678"
    assert line["message"] == "user [REDACTED:email] failed"
    assert line["level"] == "INFO"
    assert line["logger"] == "portal.test"
