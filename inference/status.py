"""Engine state as people see it, from one place: for the chat, for admins and for the model picker.

The supervisor writes each engine's actual state to the database; everything here reads it.
:func:`describe` turns one engine's row into its *effective* state (a state whose supervisor
stopped its heartbeat is not trusted) and the sentence users see ("model loading 45%"). The
rest are the shapes built from it:

- :func:`snapshot`: every engine's public state (readiness, the ``/ws/status/`` push),
- :func:`model_choices`: one entry per served model, the best engine's state (the model picker),
- :func:`public_state`: both of those from one query (what ``/ws/status/`` pushes),
- :func:`admin_snapshot`: the public state plus process and failure details (the engine pages
  and ``manage.py engine status``),
- :func:`rank`: which engine best serves a model (the request router picks the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from inference.engine_address import engine_address
from inference.models import EngineConfig, EngineState


@dataclass(frozen=True)
class EngineView:
    """An engine as users may see it: its effective state and a sentence about it."""

    name: str
    served_model: str
    state: str
    progress: float | None
    message: str
    reasoning: bool
    load: int
    # Every model it serves: a managed engine's one name; what an external engine lists or pins.
    models: tuple[str, ...] = ()
    kind: str = EngineConfig.Kind.MANAGED


# Which not-ready state best describes a model served by several engines (most hopeful first).
_HOPE = {"loading": 0, "starting": 1, "crashed": 2, "stopped": 3, "crash_loop": 4}

# What users see when an external engine cannot be used (admins see the probe's own sentence).
_EXTERNAL_MESSAGES: dict[str, str] = {
    EngineState.State.UNREACHABLE: "the engine cannot be reached — please tell an admin",
    EngineState.State.UNAUTHORIZED: "the engine refused the portal's key — please tell an admin",
    EngineState.State.INCOMPATIBLE: "the engine is not an OpenAI-compatible server — please tell an admin",
    EngineState.State.TLS_ERROR: "the engine's TLS certificate was not accepted — please tell an admin",
    EngineState.State.DEGRADED: "the engine no longer serves this model — please tell an admin",
}


def supervisor_alive(state: EngineState | None) -> bool:
    """True when the supervisor wrote a heartbeat recently enough to trust ``state``."""
    if state is None or state.heartbeat_at is None:
        return False
    return timezone.now() - state.heartbeat_at <= timedelta(seconds=settings.ENGINE_HEARTBEAT_TIMEOUT)


def describe(config: EngineConfig) -> EngineView:
    """Return the effective state of one engine and the sentence users see for it."""
    state: EngineState | None = getattr(config, "state", None)
    effective = state.state if state is not None and supervisor_alive(state) else EngineState.State.STOPPED
    progress = state.progress if state is not None and effective == EngineState.State.LOADING else None
    if effective == EngineState.State.STOPPING:
        effective = EngineState.State.STOPPED
    message = _message(effective, progress, config, state)
    load = (state.running_requests + state.waiting_requests) if state is not None else 0
    models = models_of(config, state)
    return EngineView(
        name=config.name,
        served_model=models[0] if models else config.served_model_name,
        state=effective,
        progress=progress,
        message=message,
        reasoning=bool(config.reasoning_parser),
        load=load,
        models=models,
        kind=config.kind,
    )


def models_of(config: EngineConfig, state: EngineState | None) -> tuple[str, ...]:
    """Return the models an engine serves: a managed engine's name; an external one's pins, else its list."""
    if not config.is_external:
        return (config.served_model_name,)
    if config.pinned_models:
        return tuple(config.pinned_models)
    return tuple(state.served_models) if state is not None else ()


def _message(effective: str, progress: float | None, config: EngineConfig, state: EngineState | None) -> str:
    if effective == EngineState.State.READY:
        return "ready"
    if effective == EngineState.State.LOADING:
        return f"model loading {round(progress * 100)}%" if progress is not None else "model loading"
    if effective == EngineState.State.STARTING:
        return "engine starting"
    if effective == EngineState.State.CRASHED:
        return "engine restarting after a crash — an admin has been told"
    if effective == EngineState.State.CRASH_LOOP:
        return "engine failed repeatedly and was stopped — an admin has been told"
    if effective in _EXTERNAL_MESSAGES:
        return _EXTERNAL_MESSAGES[effective]
    # Crashes are mailed to the admins by the supervisor (see inference.alerts); a dead supervisor
    # or a stopped engine tells nobody, so users are asked to.
    if config.desired_state == EngineConfig.Desired.RUNNING and not supervisor_alive(state):
        return "engine supervisor is not running — please tell an admin"
    return "engine stopped — please ask an admin to start it"


def rank(view: EngineView) -> tuple[int, int, str]:
    """Order engines by how well they serve now: ready ones first, least loaded first; then
    the most hopeful of the rest (loading before starting before crashed ...)."""
    if view.state == EngineState.State.READY:
        return (-1, view.load, view.name)
    return (_HOPE.get(view.state, 9), 0, view.name)


def engines() -> list[EngineConfig]:
    """Return every engine config with its state row, by name (one query)."""
    return list(EngineConfig.objects.select_related("state").order_by("name"))


def _state_of(view: EngineView) -> dict[str, Any]:
    return {"state": view.state, "progress": view.progress, "message": view.message, "reasoning": view.reasoning}


def _public(view: EngineView) -> dict[str, Any]:
    return {"name": view.name, "model": view.served_model, **_state_of(view)}


def _choices(views: list[EngineView], allowed: frozenset[str] | None) -> list[dict[str, Any]]:
    best: dict[str, EngineView] = {}
    for view in views:
        for model in view.models:
            if allowed is not None and model not in allowed:
                continue
            current = best.get(model)
            if current is None or rank(view) < rank(current):
                best[model] = view
    return [{"model": model, "engine": best[model].name, **_state_of(best[model])} for model in sorted(best)]


def snapshot() -> list[dict[str, Any]]:
    """Return the public state of every engine (name, model, state, progress, message, reasoning)."""
    return [_public(describe(config)) for config in engines()]


def model_choices(allowed: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Return one entry per served model (only ``allowed`` ones unless None), with its best engine's state.

    Each entry: model, engine, state, progress, message, reasoning.
    """
    return _choices([describe(config) for config in engines()], allowed)


def public_state(allowed: frozenset[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Return ``{"engines": snapshot(), "models": model_choices(allowed)}`` from one read of the database."""
    views = [describe(config) for config in engines()]
    return {"engines": [_public(view) for view in views], "models": _choices(views, allowed)}


def served_model_names() -> list[str]:
    """Return the model names the configured engines serve (what a policy may name)."""
    return list(EngineConfig.objects.values_list("served_model_name", flat=True).distinct())


def admin_snapshot() -> list[dict[str, Any]]:
    """Return what admins see of every engine: the public state plus process and failure details."""
    rows = []
    for config in engines():
        view = describe(config)
        state = getattr(config, "state", None)
        rows.append(
            {
                "name": config.name,
                "kind": config.kind,
                "model": ", ".join(view.models) or config.served_model_name,
                "desired": config.desired_state,
                "state": view.state,
                "progress": view.progress,
                "message": view.message,
                # The probe's own sentence about an external engine ("Unreachable: cannot connect to ...").
                "detail": state.message if config.is_external and state and view.state != "stopped" else "",
                "pid": state.pid if state else None,
                "url": address.text if (address := engine_address(config)) else "",
                "launched_at": state.launched_at.isoformat() if state and state.launched_at else None,
                "ready_at": state.ready_at.isoformat() if state and state.ready_at else None,
                "crash_count": state.crash_count if state else 0,
                "failure": (
                    {
                        "kind": state.failure_kind,
                        "diagnosis": state.diagnosis,
                        "remedies": state.remedies,
                        "exit_code": state.last_exit_code,
                        "at": state.exited_at.isoformat() if state.exited_at else None,
                    }
                    if state and state.failure_kind
                    else None
                ),
                "running_requests": state.running_requests if state else 0,
                "waiting_requests": state.waiting_requests if state else 0,
                "kv_cache_usage": state.kv_cache_usage if state else None,
                "supervisor": (
                    f"{state.supervisor_host} pid {state.supervisor_pid}" if state and state.supervisor_pid else ""
                ),
                "log_tail": state.log_tail if state else "",
            }
        )
    return rows
