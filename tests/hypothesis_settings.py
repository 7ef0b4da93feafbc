"""Hypothesis profiles for the property-based tests: small by default, fixed in CI.

``HYPOTHESIS_PROFILE=ci`` (set by CI) runs a fixed number of examples, derandomized so a
run is repeatable; the default profile keeps local runs short on a busy machine.

The hostile-input fuzzers (the WebSocket protocol, the ``/v1`` bodies) are held to at least
2,000 examples each in CI: decorate them with ``fuzz_settings`` instead of relying on the
profile's count.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")

_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", _BASE, max_examples=25)
settings.register_profile("ci", _BASE, max_examples=100, derandomize=True)
settings.load_profile(PROFILE)

# The hostile-input fuzzers' example count: the figure the hardening issue asks of CI.
FUZZ_EXAMPLES = 2000 if PROFILE == "ci" else 50
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES)
