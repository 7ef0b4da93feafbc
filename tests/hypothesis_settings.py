"""Hypothesis profiles for the property-based tests: small by default, fixed in CI.

``HYPOTHESIS_PROFILE=ci`` (set by CI) runs a fixed number of examples, derandomized so a
run is repeatable; the default profile keeps local runs short on a busy machine.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", _BASE, max_examples=25)
settings.register_profile("ci", _BASE, max_examples=100, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
