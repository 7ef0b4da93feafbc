"""What the auditor's pages ask of the trail: filtered events, usage per user and model, the banner."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum

from portal.audit.models import Event
from portal.audit.verify import verify_chain
from portal.metrics import AuditChainState

GENERATION = "generation"
VERIFY_CACHE_KEY = "portal.audit.verify"


class EventFilter(forms.Form):
    """The list's and the exports' filters; every field is optional, dates are whole UTC days."""

    user = forms.CharField(required=False, max_length=150, help_text="Actor's user name as it was then.")
    action = forms.CharField(required=False, max_length=64)
    outcome = forms.CharField(required=False, max_length=32)
    model = forms.CharField(required=False, max_length=200)
    channel = forms.CharField(required=False, max_length=32)
    since = forms.DateField(required=False, label="From (UTC day)")
    until = forms.DateField(required=False, label="Until (UTC day, inclusive)")

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The first day is after the last day.")
        return cleaned

    def filtered(self, events: QuerySet[Event] | None = None) -> QuerySet[Event]:
        """Return the events matching the valid filters (call only after ``is_valid()``)."""
        data = self.cleaned_data
        events = Event.objects.all() if events is None else events
        if data.get("user"):
            events = events.filter(Q(actor_name=data["user"]) | Q(target=data["user"], actor__isnull=True))
        for name in ("action", "outcome", "model", "channel"):
            if data.get(name):
                events = events.filter(**{name: data[name]})
        if data.get("since"):
            events = events.filter(created_at__gte=datetime.combine(data["since"], time.min, tzinfo=UTC))
        if data.get("until"):
            end = datetime.combine(data["until"], time.min, tzinfo=UTC) + timedelta(days=1)
            events = events.filter(created_at__lt=end)
        return events

    def as_query(self) -> dict[str, str]:
        """The valid filters that are set, as strings (recorded with an export)."""
        return {name: str(value) for name, value in self.cleaned_data.items() if value not in (None, "")}


def usage_summary(events: QuerySet[Event]) -> list[dict[str, Any]]:
    """Return generations per user and model: requests, tokens, and how many did not complete."""
    rows = (
        events.filter(action=GENERATION)
        .values("actor_name", "model")
        .annotate(
            requests=Count("seq"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"),
            not_complete=Count("seq", filter=~Q(outcome="complete")),
        )
        .order_by("actor_name", "model")
    )
    return [dict(row) for row in rows]


def refusals_since(since: datetime) -> list[dict[str, Any]]:
    """Return the generations refused since ``since`` (over quota, rate limited, by a plugin, ...), by outcome."""
    rows = (
        Event.objects.filter(action="generation", created_at__gte=since)
        .exclude(outcome__in=["complete", "stopped", "interrupted", "error", "lost", "engine_crash"])
        .values("outcome")
        .annotate(count=Count("seq"))
        .order_by("-count", "outcome")
    )
    return [dict(row) for row in rows]


def chain_state() -> dict[str, Any]:
    """Return the banner: whether the chain verifies and its summary (cached for a short while)."""
    state: dict[str, Any] | None = cache.get(VERIFY_CACHE_KEY)
    if state is None:
        report = verify_chain()
        state = {
            "ok": report.ok,
            "summary": report.summary(),
            "last_seq": report.last_seq,
            "checked_at": datetime.now(UTC),
        }
        cache.set(VERIFY_CACHE_KEY, state, settings.AUDIT_VERIFY_CACHE_SECONDS)
    return state


def chain_metrics() -> AuditChainState:
    """Return the chain's state for ``/metrics`` (the banner's cached verification)."""
    state = chain_state()
    return AuditChainState(
        events=int(state["last_seq"]), intact=bool(state["ok"]), last_verified_at=state["checked_at"]
    )
