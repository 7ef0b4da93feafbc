"""Route a request to an engine: which ready engine serves a model, and what to say when none does.

The rest of the portal asks :func:`pick_engine` for a target and shows
:class:`EngineUnavailable`'s message to the user ("model loading 45%") instead of an
error page. Everything here reads the database only; the supervisor writes it. How an
engine's state is read and ranked is :mod:`inference.status`'s.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from inference.engine_address import EngineAddress, engine_address
from inference.engine_secrets import EngineKeyError, engine_api_key
from inference.models import EngineConfig, EngineState
from inference.status import EngineView, describe, engines, rank


@dataclass(frozen=True)
class EngineTarget:
    """Where to send one request: a ready engine, its key (this launch's, or an external one's) and CA bundle."""

    name: str
    base_url: str  # the stored address: ``unix:PATH`` (a managed engine) or a URL (inference.engine_address)
    api_key: str
    served_model: str
    reasoning: bool
    ca_bundle: str = ""
    # vLLM runs with --scheduling-policy priority: requests may carry a priority.
    priority_scheduling: bool = False

    @property
    def address(self) -> EngineAddress:
        """Where to send the request, with the transport it needs (socket or URL)."""
        return EngineAddress(text=self.base_url, ca_bundle=self.ca_bundle)


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
    # Managed and external engines alike: every engine whose models include the one asked for.
    views = [(describe(config), config) for config in configs]
    if allowed is not None:
        views = [pair for pair in views if allowed.intersection(pair[0].models)]
        if not views:
            raise EngineUnavailable("none", "no engine serves a model your policy allows — please ask an admin")
    if model is None:
        model = _default_model_of(views, allowed)
    candidates = [pair for pair in views if model in pair[0].models]
    if not candidates:
        raise EngineUnavailable("unknown_model", f"no engine serves the model {model!r}", model=model)
    # The best ranked is the least-loaded ready engine, or else the most hopeful one.
    view, config = min(candidates, key=lambda pair: rank(pair[0]))
    if view.state == EngineState.State.READY:
        # Loads are the supervisors' last samples (every few seconds): ready engines equally loaded
        # by that count share a burst at random instead of all of it going to the first by name.
        view, config = secrets.choice([pair for pair in candidates if rank(pair[0])[:2] == rank(view)[:2]])
    address = engine_address(config)
    if view.state == EngineState.State.READY and address is not None:
        state = config.state
        try:
            api_key = engine_api_key(config) if config.is_external else state.api_key
        except EngineKeyError:
            raise EngineUnavailable("unauthorized", "the engine refused the portal's key — please tell an admin",
                                    model=model) from None  # fmt: skip
        return EngineTarget(
            name=config.name,
            base_url=address.text,
            api_key=api_key,
            served_model=model,
            reasoning=view.reasoning,
            ca_bundle=address.ca_bundle,
            priority_scheduling=config.scheduling_policy == EngineConfig.Scheduling.PRIORITY,
        )
    raise EngineUnavailable(view.state, view.message, progress=view.progress, model=model)


def _default_model_of(views: list[tuple[EngineView, EngineConfig]], allowed: frozenset[str] | None) -> str:
    """The model of a request that names none: the model of the first-configured ready engine.

    A fixed default, not whichever engine is least loaded: two requests without a model get
    the same model (and so the same kind of answer) however busy the engines are. With no
    engine ready, the most hopeful engine's model, so the refusal describes that engine.
    """
    ready = [pair for pair in views if pair[0].state == EngineState.State.READY]
    view, _ = min(ready, key=lambda pair: pair[1].pk) if ready else min(views, key=lambda pair: rank(pair[0]))
    return _default_model(view.served_model, view.models, allowed)


def _default_model(preferred: str, models: list[str] | tuple[str, ...], allowed: frozenset[str] | None) -> str:
    """The model to ask an engine for when the request named none: its own, if the policy allows it."""
    if allowed is None or preferred in allowed:
        return preferred
    return sorted(allowed.intersection(models))[0]
