"""Generation parameters: which ones a request may set, their ranges, and the user's token limit.

One set of ranges for every client (the chat socket and the ``/v1`` API): :func:`parse_sampling`
turns a request's raw parameters into a :class:`Sampling` or refuses them with
:class:`~inference.rejections.GenerationRejected` (code ``invalid_params``, the offending
``field`` in its details).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.policies import effective_policy
from inference.rejections import GenerationRejected
from inference.text_checks import storable_text

REASONING_EFFORTS = ("low", "medium", "high")
TEMPERATURE_RANGE = (0.0, 2.0)
# top_p is a probability mass: above 0 (0 would keep no token) and at most 1.
TOP_P_RANGE = (0.0, 1.0)
MODEL_NAME_CHARS = 200
SAMPLING_FIELDS = frozenset({"model", "temperature", "top_p", "max_tokens", "reasoning_effort"})


@dataclass(frozen=True)
class Sampling:
    """Validated generation parameters; ``max_tokens`` is already within the user's limit."""

    model: str | None
    temperature: float | None
    top_p: float | None
    max_tokens: int
    reasoning_effort: str | None


def max_tokens_limit(user: Any) -> int:
    """Return the most tokens one answer of ``user`` may have.

    The site's ``GENERATION_MAX_TOKENS_LIMIT``, lowered by the user's policy.
    """
    limit: int = settings.GENERATION_MAX_TOKENS_LIMIT
    own = effective_policy(user).max_tokens_per_answer
    return limit if own is None else min(limit, own)


def allowed_models(user: Any) -> frozenset[str] | None:
    """Return the served model names ``user`` may use (None: all), for the model picker."""
    policy = effective_policy(user)
    return None if policy.all_models else policy.model_names


def _number(raw: Mapping[str, Any], name: str, low: float, high: float, *, low_open: bool = False) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    # bool is an int in Python, but "temperature": true is a client bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GenerationRejected("invalid_params", f"{name} must be a number", field=name)
    try:
        number = float(value)
    except OverflowError:
        # A whole number too large for a float (JSON allows any number of digits): out of range.
        number = math.inf if value > 0 else -math.inf
    else:
        if not math.isfinite(number):
            raise GenerationRejected("invalid_params", f"{name} must be a finite number", field=name)
    if number < low or number > high or (low_open and number == low):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise GenerationRejected("invalid_params", f"{name} must be {bound} and at most {high:g}", field=name)
    return number


def parse_sampling(raw: Mapping[str, Any], user: Any) -> Sampling:
    """Validate ``model``, ``temperature``, ``top_p``, ``max_tokens`` and ``reasoning_effort``.

    Missing or null values mean the default. ``max_tokens`` above the user's limit is
    clamped to it; anything malformed or out of range raises :class:`GenerationRejected`
    with code ``invalid_params`` and the offending ``field``.
    """
    unknown = sorted(set(raw) - SAMPLING_FIELDS)
    if unknown:
        raise GenerationRejected("invalid_params", f"unknown parameter {unknown[0]!r}", field=unknown[0])
    model = raw.get("model")
    if model is not None and (not storable_text(model) or len(model) > MODEL_NAME_CHARS):
        raise GenerationRejected("invalid_params", "model must be a model name", field="model")
    temperature = _number(raw, "temperature", *TEMPERATURE_RANGE)
    top_p = _number(raw, "top_p", *TOP_P_RANGE, low_open=True)
    limit = max_tokens_limit(user)
    max_tokens = raw.get("max_tokens")
    if max_tokens is None:
        max_tokens = min(settings.GENERATION_MAX_TOKENS_DEFAULT, limit)
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise GenerationRejected("invalid_params", "max_tokens must be a whole number", field="max_tokens")
    elif max_tokens < 1:
        raise GenerationRejected("invalid_params", "max_tokens must be at least 1", field="max_tokens")
    effort = raw.get("reasoning_effort") or None
    if effort is not None and effort not in REASONING_EFFORTS:
        raise GenerationRejected(
            "invalid_params", "reasoning_effort must be low, medium or high", field="reasoning_effort"
        )
    return Sampling(
        model=model or None,
        temperature=temperature,
        top_p=top_p,
        max_tokens=min(max_tokens, limit),
        reasoning_effort=effort,
    )
