"""The auditor's pages (Auditors and Admins): events, one event, exports, usage. All read only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.audit import chain, export
from portal.audit.access import VIEW_PERMISSION
from portal.audit.models import Event, EventContent
from portal.audit.queries import EventFilter, chain_state, usage_summary
from portal.audit.trail import record_request

EXPORT = "audit.export"
PER_PAGE = 50
MAX_SEQ = 2**63 - 1


def auditors_only(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Let through holders of ``audit.view_event``; others get 403 (anonymous: the login page)."""
    return require_GET(permission_required(VIEW_PERMISSION, raise_exception=True)(view))


def _filters(request: HttpRequest) -> EventFilter:
    form = EventFilter(request.GET or None)
    if request.GET:
        form.is_valid()
    else:
        form.cleaned_data = {}
    return form


@auditors_only
def events(request: HttpRequest) -> HttpResponse:
    form = _filters(request)
    if form.errors:
        context: dict[str, Any] = {"form": form, "page": None, "chain": chain_state()}
        return render(request, "audit/events.html", context, status=400)
    page = Paginator(form.filtered().order_by("-seq"), PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request, "audit/events.html", {"form": form, "page": page, "chain": chain_state(), "query": query.urlencode()}
    )


@auditors_only
def event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    try:
        if seq > MAX_SEQ:  # beyond a 64-bit integer: the database would refuse the query
            raise Event.DoesNotExist
        event = Event.objects.get(seq=seq)
    except Event.DoesNotExist:
        raise Http404("No such event (it may have been pruned).") from None
    try:
        intact = chain.event_hash(event) == event.hash
    except ValueError:
        intact = False
    content = EventContent.objects.filter(event_seq=seq).first()
    context = {"event": event, "intact": intact, "content": content.texts if content else None}
    return render(request, "audit/event_detail.html", context)


@auditors_only
def export_events(request: HttpRequest, fmt: str) -> HttpResponseBase:
    if fmt not in export.FORMATS:
        raise Http404("Unknown export format.")
    form = _filters(request)
    if form.errors:
        problems = "; ".join(f"{name}: {' '.join(map(str, errors))}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(f"Invalid filters: {problems}", content_type="text/plain; charset=utf-8")
    # The export covers the trail as it is now; its own event (and later ones) are not in it.
    with transaction.atomic():
        through = Event.objects.aggregate(last=Max("seq"))["last"] or 0
        record_request(request, EXPORT, target=f"{fmt} through event {through}", data={"filters": form.as_query()})
    selected = form.filtered(Event.objects.filter(seq__lte=through))
    response = StreamingHttpResponse(export.stream(selected, fmt), content_type=export.FORMATS[fmt])
    name = f"audit-{timezone.now():%Y%m%d-%H%M%S}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Accel-Buffering"] = "no"
    return response


@auditors_only
def usage(request: HttpRequest) -> HttpResponse:
    form = _filters(request)
    status = 400 if form.errors else 200
    rows: list[dict[str, Any]] = [] if form.errors else usage_summary(form.filtered())
    return render(request, "audit/usage.html", {"form": form, "rows": rows, "chain": chain_state()}, status=status)
