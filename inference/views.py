"""Admin pages of the engines: list with live state, detail with log and charts, start/stop/restart.

Thin views: check the admin role, call one service, render. Only admins may see or change
engines; members and auditors get 403.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.gates import admin_required
from inference import desired_state, status, telemetry
from inference.engine_process import engine_log_path
from inference.external_engines import ExternalEngineRefused, register_external
from inference.forms import ExternalEngineForm
from inference.models import EngineConfig

ACTIONS: dict[str, Callable[[EngineConfig], None]] = {
    "start": desired_state.start_engine,
    "stop": desired_state.stop_engine,
    "restart": desired_state.restart_engine,
}


@require_GET
@admin_required
def engine_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "inference/engines.html",
        {"engines": status.admin_snapshot(), "hosts": telemetry.host_readings()},
    )


@require_GET
@admin_required
def engine_detail(request: HttpRequest, name: str) -> HttpResponse:
    config = get_object_or_404(EngineConfig.objects.select_related("state"), name=name)
    row = next(item for item in status.admin_snapshot() if item["name"] == name)
    return render(
        request,
        "inference/engine_detail.html",
        {
            "config": config,
            "engine": row,
            "plan": None if config.is_external else desired_state.memory_plan(config),
            "log_path": engine_log_path(name),
        },
    )


@require_POST
@admin_required
def engine_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    config = get_object_or_404(EngineConfig.objects.select_related("state"), name=name)
    change = ACTIONS.get(action)
    if change is None:
        raise PermissionDenied("Unknown action.")
    try:
        change(config)
    except desired_state.EngineRefused as exc:
        messages.error(request, f"{exc.message} Edit the engine and tick “ignore memory plan” to start it anyway.")
    else:
        messages.success(request, f"{config.name}: {action} requested; the supervisor carries it out.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = ""
    return redirect(target or "inference:engines")


@require_http_methods(["GET", "POST"])
@admin_required
def add_external(request: HttpRequest) -> HttpResponse:
    """Register an external engine; the supervisor probes it (never this request)."""
    form = ExternalEngineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            config = register_external(form.spec())
        except ExternalEngineRefused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{config.name}: registered at {config.url}; the supervisor probes it shortly.")
            return redirect("inference:engine", name=config.name)
    return render(request, "inference/add_external.html", {"form": form}, status=400 if form.errors else 200)


@never_cache
@require_GET
@admin_required
def status_json(request: HttpRequest) -> JsonResponse:
    """Everything the engine pages refresh every few seconds.

    The host panel comes rendered by its template too, so the page has one renderer of it.
    """
    hosts = telemetry.host_readings()
    cards = render_to_string("inference/_host_cards.html", {"hosts": hosts}, request=request)
    return JsonResponse({"engines": status.admin_snapshot(), "hosts": hosts, "host_cards_html": cards})


@never_cache
@require_GET
@admin_required
def metrics_json(request: HttpRequest, name: str) -> JsonResponse:
    config = get_object_or_404(EngineConfig, name=name)
    return JsonResponse({"engine": name, "samples": telemetry.recent_samples(config)})


def engines_widget(request: HttpRequest) -> dict[str, object]:
    """Context of the home page's engine widget: each engine's state and how busy it is."""
    return {"engines": [status.describe(config) for config in status.engines()]}
