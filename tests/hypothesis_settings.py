"""Hypothesis profiles for the property-based tests: small by default, fixed in CI.

``HYPOTHESIS_PROFILE=ci`` (set by CI) runs a fixed number of examples, derandomized so a
run is repeatable; the default profile keeps local runs short on a busy machine.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("default", max_examples=25, **_COMMON)
settings.register_profile("ci", max_examples=100, derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
