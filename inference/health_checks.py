"""The inference app's health checks: engines in /readyz, and the engine checks of ``manage.py doctor``.

Registered in the registry (``readiness_checks`` and ``doctor_checks``) by
:class:`inference.apps.InferenceConfig`; the portal runs them without importing this app.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.models import EngineConfig
from inference.status import describe, snapshot, supervisor_alive
from portal.doctor import FAIL, OK, WARN, Finding


def check_engines_ready() -> dict[str, Any]:
    """Readiness: each engine's state; not ready only when a ready engine is required and none is."""
    engines = snapshot()
    serving = any(engine["state"] == "ready" for engine in engines)
    return {
        "ok": serving or not settings.ENGINE_REQUIRED_FOR_READY,
        "serving": serving,
        "engines": [
            {key: engine[key] for key in ("name", "model", "state", "progress", "message")} for engine in engines
        ],
    }


def check_engines() -> Iterator[Finding]:
    """Engine venv, model paths, supervisor heartbeat and each engine's state."""
    vllm = Path(settings.ENGINE_VENV) / "bin" / "vllm"
    configs = list(EngineConfig.objects.select_related("state"))
    # A portal that only fronts external engines needs no vLLM of its own.
    if not vllm.exists() and not (configs and all(config.is_external for config in configs)):
        yield Finding("engine install", FAIL, f"{vllm} is missing.", "Run `make engine` (make run does it).")
    if not configs:
        yield Finding(
            "engines", WARN, "No engine is configured.", "make run creates the demo engine; or add one in admin."
        )
    for config in configs:
        label = f"engine {config.name}"
        if config.model.startswith("/") and not Path(config.model).is_dir():
            yield Finding(label, FAIL, f"Model folder {config.model} does not exist.", "Fix the model path in admin.")
            continue
        view = describe(config)
        state = getattr(config, "state", None)
        if config.desired_state == EngineConfig.Desired.RUNNING and not supervisor_alive(state):
            yield Finding(
                label,
                FAIL,
                "It should run, but no supervisor has reported for it recently.",
                "Start the supervisor: `python manage.py runengine` (make run starts it).",
            )
        elif view.state == "ready":
            yield Finding(label, OK, f"ready, serving {', '.join(view.models)}.")
        elif config.is_external and state is not None:  # the probe's sentence and what to do
            yield Finding(f"{label} (external, {config.url})", FAIL, state.message, " ".join(state.remedies))
        elif view.state in ("crashed", "crash_loop"):
            diagnosis = state.diagnosis if state is not None else ""
            remedies = " ".join(state.remedies) if state is not None and state.remedies else ""
            fix = f"{remedies} See the Engines page for the log.".strip()
            yield Finding(label, FAIL, f"{view.message}. {diagnosis}".strip(), fix)
        else:
            yield Finding(label, WARN if view.state != "stopped" else OK, view.message)
