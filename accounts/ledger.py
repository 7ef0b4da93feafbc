"""The usage ledger: reserve before a generation, settle exactly once after it.

The protocol (Zulip's, for its LLM features): :func:`reserve` takes the prompt tokens plus
``max_tokens`` and a concurrency slot in one short transaction under a row lock on the
user's :class:`~accounts.models.UsageCounter`; :func:`settle` gives the reservation back
and counts the actual usage, once, whatever happened to the answer. A crashed web process
cannot settle its answers: the sweep that marks them lost calls :func:`settle_lost`.

Lock order (the portal's, see docs/architecture.md): the conversation row, then the
ledger's rows, then the audit chain head. Inside the ledger the user's counter row is
always locked first, then their reservation rows; nothing here locks a conversation.

Periods are days and calendar months in the site's time zone (``PORTAL_TIME_ZONE``). A
reservation counts for the day it was made: one that is settled after midnight adds its
usage to yesterday's roll-up and no longer to today's budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import MAX_TOKENS_PER_PERIOD, Adjustment, DailyUsage, Reservation, UsageCounter
from accounts.policies import EffectivePolicy, effective_policy, record_quota_change

CHANNELS = ("chat", "api")
# The roll-up's channel for manual adjustments (they have no model).
ADJUSTMENT = "adjustment"
RATE_WINDOW = timedelta(minutes=1)

# Refusal codes, as the chat and the API send them.
QUOTA_EXCEEDED = "quota_exceeded"
TOO_MANY_ANSWERS = "too_many_answers"
MODEL_NOT_ALLOWED = "model_not_allowed"
RATE_LIMITED = "rate_limited"


class QuotaRefused(Exception):
    """The ledger refused a reservation.

    ``code`` is one of ``quota_exceeded``, ``too_many_answers``, ``model_not_allowed`` and
    ``rate_limited``; ``limit`` names the limit and its value (``{"name": "tokens_per_day",
    "value": 50000}``); ``retry_after`` is seconds until a retry can succeed, ``resets_at``
    the moment the budget is renewed (None when waiting does not help or is unknown).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        limit: dict[str, Any] | None = None,
        retry_after: int | None = None,
        resets_at: datetime | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.limit = limit
        self.retry_after = retry_after
        self.resets_at = resets_at
        self.extra = extra

    def details(self) -> dict[str, Any]:
        """Return the refusal's details as JSON-ready values (``resets_at`` in ISO 8601)."""
        return {
            "limit": self.limit,
            "retry_after": self.retry_after,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            **self.extra,
        }


@dataclass(frozen=True)
class Periods:
    """The site-time-zone periods at one moment and when they end."""

    now: datetime
    day: date
    month: date
    day_ends: datetime
    month_ends: datetime


def periods(now: datetime | None = None) -> Periods:
    """Return today's and this month's periods in the site time zone."""
    now = now or timezone.now()
    zone = ZoneInfo(settings.TIME_ZONE)
    local = now.astimezone(zone)
    day = local.date()
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return Periods(
        now=now,
        day=day,
        month=month,
        day_ends=datetime.combine(day + timedelta(days=1), datetime.min.time(), zone),
        month_ends=datetime.combine(next_month, datetime.min.time(), zone),
    )


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _roll(counter: UsageCounter, at: Periods) -> None:
    """Start new periods on a counter whose day, month or minute is over."""
    if counter.day != at.day:
        counter.day, counter.day_tokens, counter.day_requests = at.day, 0, 0
    if counter.month != at.month:
        counter.month, counter.month_tokens = at.month, 0
    if counter.minute is None or at.now - counter.minute >= RATE_WINDOW:
        counter.minute, counter.minute_requests = at.now, 0


def _locked_counter(user_id: int) -> UsageCounter:
    locked = UsageCounter.objects.select_for_update()
    counter = locked.filter(user_id=user_id).first()
    if counter is None:
        # A user's first reservation: two at once would both try to create the row.
        # ignore_conflicts lets the second one find the first one's row and wait for its lock.
        UsageCounter.objects.bulk_create([UsageCounter(user_id=user_id)], ignore_conflicts=True)
        counter = locked.get(user_id=user_id)
    return counter


def _admit(counter: UsageCounter, policy: EffectivePolicy, prompt_tokens: int, max_tokens: int, at: Periods) -> int:
    """Check every limit against the locked counter; return the answer tokens granted."""
    rpm = policy.requests_per_minute
    if rpm is not None and counter.minute_requests >= rpm:
        window_start = counter.minute or at.now  # set by _roll
        retry = _seconds_until(window_start + RATE_WINDOW, at.now)
        raise QuotaRefused(
            RATE_LIMITED,
            f"You may start {rpm:,} answers a minute; try again in {retry} s.",
            limit={"name": "requests_per_minute", "value": rpm},
            retry_after=retry,
        )
    concurrent = policy.concurrent_answers
    if concurrent is not None and counter.active_answers >= concurrent:
        raise QuotaRefused(
            TOO_MANY_ANSWERS,
            f"You may have {concurrent:,} answer{'s' if concurrent != 1 else ''} written at once; "
            "wait until one is finished.",
            limit={"name": "concurrent_answers", "value": concurrent},
        )
    per_day = policy.requests_per_day
    if per_day is not None and counter.day_requests >= per_day:
        raise QuotaRefused(
            QUOTA_EXCEEDED,
            f"Your {per_day:,} answers for today are used up.",
            limit={"name": "requests_per_day", "value": per_day},
            retry_after=_seconds_until(at.day_ends, at.now),
            resets_at=at.day_ends,
        )
    granted = max_tokens
    for name, budget, used, ends in (
        ("tokens_per_day", policy.tokens_per_day, counter.day_tokens, at.day_ends),
        ("tokens_per_month", policy.tokens_per_month, counter.month_tokens, at.month_ends),
    ):
        if budget is None:
            continue
        left = budget - used - counter.held_tokens - prompt_tokens
        if left < 1:
            period = "daily" if name == "tokens_per_day" else "monthly"
            raise QuotaRefused(
                QUOTA_EXCEEDED,
                f"Your {period} budget of {budget:,} tokens is used up.",
                limit={"name": name, "value": budget},
                retry_after=_seconds_until(ends, at.now),
                resets_at=ends,
            )
        # What is left of the budget caps the answer instead of refusing it outright.
        granted = min(granted, left)
    return granted


def check_model(policy: EffectivePolicy, model: str) -> None:
    """Raise :class:`QuotaRefused` ``model_not_allowed`` (listing ``allowed``) unless ``policy`` allows ``model``."""
    if not policy.allows(model):
        raise QuotaRefused(
            MODEL_NOT_ALLOWED,
            f"Your policy does not include the model {model!r}.",
            allowed=sorted(policy.model_names),
        )


def reserve(
    user: Any,
    *,
    model: str,
    channel: str,
    prompt_tokens: int,
    max_tokens: int,
    request_id: str,
    policy: EffectivePolicy | None = None,
) -> Reservation:
    """Reserve ``prompt_tokens`` + ``max_tokens`` and a concurrency slot for one answer.

    One short transaction under a row lock on the user's counter. The granted answer length
    is the returned reservation's ``max_tokens``: at most ``max_tokens``, less when less is
    left of a token budget. Raises :class:`QuotaRefused` (``model_not_allowed``,
    ``quota_exceeded``, ``too_many_answers``, ``rate_limited``) and then holds nothing.
    Every returned reservation must be given to :func:`settle` exactly once.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if prompt_tokens < 0 or max_tokens < 1:
        raise ValueError("prompt_tokens must be at least 0 and max_tokens at least 1")
    policy = policy or effective_policy(user)
    check_model(policy, model)
    if policy.max_prompt_tokens is not None and prompt_tokens > policy.max_prompt_tokens:
        raise QuotaRefused(
            QUOTA_EXCEEDED,
            f"This conversation is {prompt_tokens:,} tokens long; your policy allows prompts of "
            f"{policy.max_prompt_tokens:,} tokens. Start a new conversation.",
            limit={"name": "max_prompt_tokens", "value": policy.max_prompt_tokens},
        )
    at = periods()
    with transaction.atomic():
        counter = _locked_counter(user.pk)
        _roll(counter, at)
        granted = _admit(counter, policy, prompt_tokens, max_tokens, at)
        counter.held_tokens += prompt_tokens + granted
        counter.active_answers += 1
        counter.day_requests += 1
        counter.minute_requests += 1
        counter.save()
        return Reservation.objects.create(
            request_id=request_id,
            user_id=user.pk,
            model=model,
            channel=channel,
            day=at.day,
            prompt_tokens=prompt_tokens,
            max_tokens=granted,
        )


def _remaining(counter: UsageCounter, policy: EffectivePolicy, at: Periods) -> dict[str, Any]:
    def left(budget: int | None, used: int) -> int | None:
        return None if budget is None else max(0, budget - used)

    return {
        "tokens_today": left(policy.tokens_per_day, counter.day_tokens + counter.held_tokens),
        "tokens_this_month": left(policy.tokens_per_month, counter.month_tokens + counter.held_tokens),
        "requests_today": left(policy.requests_per_day, counter.day_requests),
        "day_resets_at": at.day_ends.isoformat(),
        "month_resets_at": at.month_ends.isoformat(),
    }


def remaining(user: Any, policy: EffectivePolicy | None = None) -> dict[str, Any]:
    """Return what is left today and this month (None: unlimited), and when each renews."""
    policy = policy or effective_policy(user)
    at = periods()
    counter = UsageCounter.objects.filter(user_id=user.pk).first() or UsageCounter(user_id=user.pk)
    _roll(counter, at)
    return _remaining(counter, policy, at)


def _count(counter: UsageCounter, reservation: Reservation, tokens: int) -> None:
    """Add settled ``tokens`` to the periods of the reservation's day that are still current."""
    if reservation.day == counter.day:
        counter.day_tokens = max(0, counter.day_tokens + tokens)
    if reservation.day.replace(day=1) == counter.month:
        counter.month_tokens = max(0, counter.month_tokens + tokens)


def _settle_locked(
    counter: UsageCounter,
    reservation: Reservation,
    prompt: int,
    completion: int,
    outcome: str,
    at: Periods,
) -> bool:
    """Settle one reservation whose user's counter is locked; False if it was settled before."""
    won = Reservation.objects.filter(pk=reservation.pk, settled_at__isnull=True).update(
        settled_at=at.now,
        outcome=outcome,
        used_prompt_tokens=prompt,
        used_completion_tokens=completion,
    )
    if not won:
        return False
    counter.held_tokens = max(0, counter.held_tokens - reservation.tokens)
    counter.active_answers = max(0, counter.active_answers - 1)
    if outcome == Reservation.Outcome.CANCELLED:
        # Never started: the request does not count either.
        if reservation.day == counter.day:
            counter.day_requests = max(0, counter.day_requests - 1)
        return True
    _count(counter, reservation, prompt + completion)
    key = {"user_id": reservation.user_id, "model": reservation.model, "channel": reservation.channel}
    row = DailyUsage.objects.filter(day=reservation.day, **key)
    add = {
        "requests": F("requests") + 1,
        "prompt_tokens": F("prompt_tokens") + prompt,
        "completion_tokens": F("completion_tokens") + completion,
    }
    # The day's row nearly always exists: one UPDATE; the day's first answer creates it first
    # (ignore_conflicts: a concurrent settlement of another of the user's answers may too).
    if not row.update(**add):
        DailyUsage.objects.bulk_create([DailyUsage(day=reservation.day, **key)], ignore_conflicts=True)
        row.update(**add)
    return True


def settle(
    reservation: Reservation,
    *,
    prompt_tokens: int | None,
    completion_tokens: int,
    outcome: str,
    policy: EffectivePolicy | None = None,
) -> dict[str, Any]:
    """Replace the reservation by the actual usage; return what is left (see :func:`remaining`).

    ``prompt_tokens`` None (the engine sent no usage) counts the reserved prompt tokens.
    ``outcome`` is a :class:`~accounts.models.Reservation.Outcome` value; ``cancelled``
    (the answer never started) counts nothing. Settling a reservation a second time
    changes nothing. Call it inside the transaction that stores the answer, so both commit
    together. ``policy`` is the one the reservation was admitted under (what is left is
    reported by it, without reading the policy again); None reads the user's policy now.
    """
    if outcome not in Reservation.Outcome.values:
        raise ValueError(f"unknown outcome {outcome!r}")
    prompt = reservation.prompt_tokens if prompt_tokens is None else max(0, prompt_tokens)
    completion = max(0, completion_tokens)
    if outcome == Reservation.Outcome.CANCELLED:
        prompt = completion = 0
    at = periods()
    # No savepoint inside the caller's settlement transaction: a failure here rolls all of it back.
    with transaction.atomic(savepoint=False):
        counter = _locked_counter(reservation.user_id)
        _roll(counter, at)
        _settle_locked(counter, reservation, prompt, completion, outcome, at)
        counter.save()
    if policy is None:
        policy = effective_policy(get_user_model()(pk=reservation.user_id))  # the id is all it reads
    return _remaining(counter, policy, at)


def settle_lost(request_ids: Iterable[str]) -> int:
    """Settle the open reservations of answers whose web process died; return how many.

    Only the prompt is known to have been processed, so that is what is counted (the
    stored partial answer, if any, was never counted in tokens). Already settled or
    unknown request ids are skipped.
    """
    open_reservations = list(
        Reservation.objects.filter(request_id__in=list(request_ids), settled_at__isnull=True).order_by("user_id", "pk")
    )
    at = periods()
    settled = 0
    for reservation in open_reservations:
        with transaction.atomic():
            counter = _locked_counter(reservation.user_id)
            _roll(counter, at)
            settled += _settle_locked(counter, reservation, reservation.prompt_tokens, 0, Reservation.Outcome.LOST, at)
            counter.save()
    return settled


def adjust(user: Any, *, tokens: int, reason: str, actor: Any) -> Adjustment | None:
    """Add ``tokens`` to the user's usage today (negative: give back), with a reason.

    Usage never goes below zero: giving back more than was used today gives back what was
    used, and the adjustment records that amount (None when there was nothing to give
    back). Raises ``ValueError`` for an empty reason or a zero adjustment.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a manual adjustment needs a reason")
    if tokens == 0:
        raise ValueError("an adjustment of 0 tokens changes nothing")
    at = periods()
    with transaction.atomic():
        counter = _locked_counter(user.pk)
        _roll(counter, at)
        applied = max(tokens, -counter.day_tokens)
        if applied == 0:
            return None
        before = {"tokens_today": counter.day_tokens, "tokens_this_month": counter.month_tokens}
        counter.day_tokens += applied
        counter.month_tokens = max(0, counter.month_tokens + applied)
        counter.save()
        # Adjustments have a roll-up row of their own, so the reports add up to the ledger.
        row, _ = DailyUsage.objects.get_or_create(user_id=user.pk, model="", channel=ADJUSTMENT, day=at.day)
        DailyUsage.objects.filter(pk=row.pk).update(adjustment_tokens=F("adjustment_tokens") + applied)
        adjustment = Adjustment.objects.create(
            user_id=user.pk, day=at.day, tokens=applied, reason=reason[:500], made_by=actor
        )
        after = {"tokens_today": counter.day_tokens, "tokens_this_month": counter.month_tokens}
        record_quota_change("usage.adjust", actor=actor, target=user, before=before, after=after, reason=reason)
    return adjustment


def reset(user: Any, *, reason: str, actor: Any) -> Adjustment | None:
    """Give back everything ``user`` used today (an admin's correction); None when nothing was used.

    Raises ``ValueError`` for an empty reason. Open reservations stay held.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reset needs a reason")
    return adjust(user, tokens=-MAX_TOKENS_PER_PERIOD, reason=f"reset: {reason}", actor=actor)
