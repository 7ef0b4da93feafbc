"""Route a request to an engine: which ready engine serves a model, and what to say when none does.

The rest of the portal asks :func:`pick_engine` for a target and shows
:class:`EngineUnavailable`'s message to the user ("model loading 45%") instead of an
error page. Everything here reads the database only; the supervisor writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from inference.models import EngineConfig, EngineState


@dataclass(frozen=True)
class EngineTarget:
    """Where to send one request: a ready engine and this launch's key."""

    name: str
    base_url: str
    api_key: str
    served_model: str
    reasoning: bool
    # vLLM runs with --scheduling-policy priority: requests may carry a priority.
    priority_scheduling: bool = False


class EngineUnavailable(Exception):
    """No ready engine serves the model.

    ``state`` is one of 'none', 'stopped', 'starting', 'loading', 'crashed', 'crash_loop',
    'unknown_model'; ``message`` is a sentence for users; ``progress`` is 0..1 while
    loading; ``model`` is the model asked for.
    """

    def __init__(self, state: str, message: str, progress: float | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.state = state
        self.message = message
        self.progress = progress
        self.model = model


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


# Which not-ready state best describes a model served by several engines (most hopeful first).
_HOPE = {"loading": 0, "starting": 1, "crashed": 2, "stopped": 3, "crash_loop": 4}


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
    return EngineView(
        name=config.name,
        served_model=config.served_model_name,
        state=effective,
        progress=progress,
        message=message,
        reasoning=bool(config.reasoning_parser),
        load=load,
    )


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
    # Crashes are mailed to the admins by the supervisor (see tell_admins); a dead supervisor
    # or a stopped engine tells nobody, so users are asked to.
    if config.desired_state == EngineConfig.Desired.RUNNING and not supervisor_alive(state):
        return "engine supervisor is not running — please tell an admin"
    return "engine stopped — please ask an admin to start it"


def _engines() -> list[EngineConfig]:
    return list(EngineConfig.objects.select_related("state").order_by("name"))


def pick_engine(model: str | None, allowed: frozenset[str] | None = None) -> EngineTarget:
    """Return the least-loaded ready engine serving ``model`` (None: any ready engine).

    ``allowed`` (None: all) limits the choice to those served models. Raises
    :class:`EngineUnavailable` describing the most hopeful engine when none is ready.
    """
    engines = _engines()
    if not engines:
        raise EngineUnavailable("none", "no engine is configured — please ask an admin to add one", model=model)
    engines = [config for config in engines if allowed is None or config.served_model_name in allowed]
    if not engines:
        raise EngineUnavailable("none", "no engine serves a model your policy allows — please ask an admin")
    candidates = [config for config in engines if model is None or config.served_model_name == model]
    if not candidates:
        raise EngineUnavailable("unknown_model", f"no engine serves the model {model!r}", model=model)
    views = [(describe(config), config) for config in candidates]
    ready = [(view, config) for view, config in views if view.state == EngineState.State.READY]
    if ready:
        view, config = min(ready, key=lambda item: (item[0].load, item[0].name))
        state = config.state
        return EngineTarget(
            name=config.name,
            base_url=state.base_url,
            api_key=state.api_key,
            served_model=config.served_model_name,
            reasoning=view.reasoning,
            priority_scheduling=config.scheduling_policy == EngineConfig.Scheduling.PRIORITY,
        )
    best = min((view for view, _ in views), key=lambda view: (_HOPE.get(view.state, 9), view.name))
    raise EngineUnavailable(best.state, best.message, progress=best.progress, model=model or best.served_model)


def model_choices(allowed: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Return one entry per served model (only ``allowed`` ones unless None), with its best state.

    Each entry: model, engine, state, progress, message, reasoning.
    """
    best: dict[str, EngineView] = {}
    for config in _engines():
        if allowed is not None and config.served_model_name not in allowed:
            continue
        view = describe(config)
        current = best.get(view.served_model)
        if current is None or _rank(view) < _rank(current):
            best[view.served_model] = view
    return [
        {
            "model": view.served_model,
            "engine": view.name,
            "state": view.state,
            "progress": view.progress,
            "message": view.message,
            "reasoning": view.reasoning,
        }
        for view in sorted(best.values(), key=lambda view: view.served_model)
    ]


def _rank(view: EngineView) -> tuple[int, int, str]:
    if view.state == EngineState.State.READY:
        return (-1, view.load, view.name)
    return (_HOPE.get(view.state, 9), 0, view.name)
