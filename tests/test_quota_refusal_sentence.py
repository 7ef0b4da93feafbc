"""The chat page's sentence for a quota refusal (static/chat/refusals.js), run in Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "static" / "chat" / "refusals.js"


def sentence(frame: Mapping[str, object], now_iso: str) -> str:
    node = shutil.which("node")
    assert node, "Node.js is needed for the front-end packages (make node) and this test"
    program = (
        "global.window = {};"
        f"require({json.dumps(str(SCRIPT))});"
        f"process.stdout.write(window.PortalRefusal.sentence({json.dumps(frame)}, Date.parse({json.dumps(now_iso)})));"
    )
    result = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


def test_a_used_up_daily_budget_says_when_it_resets_in_the_sites_time():
    frame = {
        "type": "error",
        "code": "quota_exceeded",
        "message": "Your daily budget of 50,000 tokens is used up.",
        "limit": {"name": "tokens_per_day", "value": 50000},
        "resets_at": "2026-12-01T00:00:00+01:00",
        "retry_after": 11520,
    }
    assert (
        sentence(frame, "2026-11-30T19:48:00Z")
        == "Your daily budget of 50,000 tokens is used up; it resets at 00:00 (in 3 h 12 min)."
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-30T23:59:20Z", "(in 40 s)"),
        ("2026-11-30T23:48:00Z", "(in 12 min)"),
        ("2026-11-30T21:00:30Z", "(in 3 h)"),
    ],
)
def test_the_time_left_reads_naturally(now, expected):
    frame = {
        "code": "quota_exceeded",
        "message": "Your daily budget of 10 tokens is used up.",
        "resets_at": "2026-12-01T00:00:00+00:00",
    }
    assert sentence(frame, now).endswith(expected + ".")


def test_a_model_refusal_lists_the_allowed_models():
    frame = {
        "code": "model_not_allowed",
        "message": "Your policy does not include the model 'big'.",
        "allowed": ["small"],
    }
    assert (
        sentence(frame, "2026-11-30T12:00:00Z") == "Your policy does not include the model 'big'. You may use: small."
    )
