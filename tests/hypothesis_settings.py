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
from hypothesis import strategies as st

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")

_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", _BASE, max_examples=25)
settings.register_profile("ci", _BASE, max_examples=100, derandomize=True)
settings.load_profile(PROFILE)

# The hostile-input fuzzers' example count: the figure the hardening issue asks of CI.
FUZZ_EXAMPLES = 2000 if PROFILE == "ci" else 50
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES)


def json_values(integer_bound: int) -> st.SearchStrategy[object]:
    """Any JSON-shaped value (small nested lists and objects), the fuzzers' common building block.

    Integers span +-``integer_bound`` (past 64 bits on purpose); floats include NaN and infinities,
    which ``json.dumps`` writes although JSON has no such values.
    """
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-integer_bound, max_value=integer_bound)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20)
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
