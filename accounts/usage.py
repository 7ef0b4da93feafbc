"""Reading the ledger: a user's usage against their limits, the 30-day chart, the admins' report.

Everything here reads; the ledger (accounts/ledger.py) is the only writer. The numbers come
from the same rows the ledger keeps (the user's counter for the current periods, the daily
roll-up for history), so the Usage page, the admin report and ``quota show`` agree with it.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Sum

from accounts.ledger import periods, remaining
from accounts.models import DailyUsage, Reservation, UsageCounter
from accounts.policies import describe, effective_policy

CHART_DAYS = 30
MAX_REPORT_DAYS = 366 * 3


def summary(user: Any) -> dict[str, Any]:
    """Return today's and this month's usage of ``user`` against their effective policy."""
    policy = effective_policy(user)
    at = periods()
    counter = UsageCounter.objects.filter(user_id=user.pk).first()
    today = counter.day_tokens if counter is not None and counter.day == at.day else 0
    requests = counter.day_requests if counter is not None and counter.day == at.day else 0
    month = counter.month_tokens if counter is not None and counter.month == at.month else 0
    return {
        "policy": describe(policy),
        "today": {"tokens": today, "requests": requests, "limit": policy.tokens_per_day},
        "month": {"tokens": month, "limit": policy.tokens_per_month},
        "requests_limit": policy.requests_per_day,
        "held_tokens": counter.held_tokens if counter is not None else 0,
        "open_answers": Reservation.objects.filter(user_id=user.pk, settled_at__isnull=True).count(),
        "remaining": remaining(user, policy),
        "day": at.day.isoformat(),
        "month_start": at.month.isoformat(),
    }


def chart(user: Any, days: int = CHART_DAYS) -> dict[str, Any]:
    """Return the user's tokens per day for the last ``days`` days, one series per model and channel.

    ``{"labels": [ISO days], "series": [{"label": "model · chat", "data": [tokens per day]}]}``;
    manual adjustments are a series of their own.
    """
    last = periods().day
    first = last - timedelta(days=days - 1)
    labels = [first + timedelta(days=offset) for offset in range(days)]
    index = {day: position for position, day in enumerate(labels)}
    series: dict[tuple[str, str], list[int]] = {}
    rows = DailyUsage.objects.filter(user_id=user.pk, day__gte=first, day__lte=last).order_by("model", "channel")
    for row in rows:
        data = series.setdefault((row.model, row.channel), [0] * days)
        data[index[row.day]] += row.total_tokens
    return {
        "labels": [day.isoformat() for day in labels],
        "series": [
            {"label": f"{model} · {channel}" if model else "manual adjustments", "data": data}
            for (model, channel), data in series.items()
        ],
    }


def check_range(first: date, last: date) -> None:
    """Raise ``ValueError`` when ``last`` is before ``first`` or the range exceeds ``MAX_REPORT_DAYS``."""
    if last < first:
        raise ValueError("the end date is before the start date")
    if (last - first).days >= MAX_REPORT_DAYS:
        raise ValueError(f"the range is longer than {MAX_REPORT_DAYS} days")


def report(first: date, last: date) -> list[dict[str, Any]]:
    """Return usage per user, model and channel between two days (inclusive), largest first.

    Raises ``ValueError`` for a bad range (see :func:`check_range`).
    """
    check_range(first, last)
    username = f"user__{get_user_model().USERNAME_FIELD}"
    rows = (
        DailyUsage.objects.filter(day__gte=first, day__lte=last)
        .values(username, "model", "channel")
        .annotate(
            requests=Sum("requests"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            adjustment=Sum("adjustment_tokens"),
        )
    )
    result = [
        {
            "user": row[username],
            "model": row["model"],
            "channel": row["channel"],
            "requests": row["requests"],
            "prompt_tokens": row["prompt"],
            "completion_tokens": row["completion"],
            "adjustment_tokens": row["adjustment"],
            "total_tokens": row["prompt"] + row["completion"] + row["adjustment"],
        }
        for row in rows
    ]
    return sorted(result, key=lambda row: (-row["total_tokens"], row["user"], row["model"], row["channel"]))


REPORT_COLUMNS = (
    "user",
    "model",
    "channel",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "adjustment_tokens",
    "total_tokens",
)


def report_csv(rows: list[dict[str, Any]]) -> str:
    """Return the report as CSV text with a header row.

    Cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) are
    prefixed with a quote: user names are chosen by users.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow([_safe_cell(row[column]) for column in REPORT_COLUMNS])
    return out.getvalue()


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
