"""Route a request to an engine: which ready engine serves a model, and what to say when none does.

The rest of the portal asks :func:`pick_engine` for a target and shows
:class:`EngineUnavailable`'s message to the user ("model loading 45%") instead of an
error page. Everything here reads the database only; the supervisor writes it. How an
engine's state is read and ranked is :mod:`inference.status`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.models import EngineConfig, EngineState
from inference.status import describe, engines, rank


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


def pick_engine(model: str | None, allowed: frozenset[str] | None = None) -> EngineTarget:
    """Return the least-loaded ready engine serving ``model`` (None: any ready engine).

    ``allowed`` (None: all) limits the choice to those served models. Raises
    :class:`EngineUnavailable` describing the most hopeful engine when none is ready.
    """
    configs = engines()
    if not configs:
        raise EngineUnavailable("none", "no engine is configured — please ask an admin to add one", model=model)
    configs = [config for config in configs if allowed is None or config.served_model_name in allowed]
    if not configs:
        raise EngineUnavailable("none", "no engine serves a model your policy allows — please ask an admin")
    candidates = [config for config in configs if model is None or config.served_model_name == model]
    if not candidates:
        raise EngineUnavailable("unknown_model", f"no engine serves the model {model!r}", model=model)
    # The best ranked is the least-loaded ready engine, or else the most hopeful one.
    view, config = min(((describe(candidate), candidate) for candidate in candidates), key=lambda pair: rank(pair[0]))
    if view.state == EngineState.State.READY:
        state = config.state
        return EngineTarget(
            name=config.name,
            base_url=state.base_url,
            api_key=state.api_key,
            served_model=config.served_model_name,
            reasoning=view.reasoning,
            priority_scheduling=config.scheduling_policy == EngineConfig.Scheduling.PRIORITY,
        )
    raise EngineUnavailable(view.state, view.message, progress=view.progress, model=model or view.served_model)
