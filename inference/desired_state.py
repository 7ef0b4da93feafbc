"""Start, stop and restart engines by changing their desired state (the supervisor acts).

Used by the admin pages and by ``manage.py engine``. Nothing here spawns a process. A start
is refused when the memory planner says the config cannot fit, unless the config says to
ignore the plan or the caller overrides it.
"""

from __future__ import annotations

from django.utils import timezone

from inference.models import EngineConfig, EngineState
from inference.planner import Capacity, Plan, PlanError, plan_for
from inference.telemetry import host_readings


class EngineRefused(Exception):
    """The start was refused; ``plan`` says why and what to change."""

    def __init__(self, message: str, plan: Plan | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.plan = plan


def capacity_for(config: EngineConfig) -> Capacity | None:
    """Return the memory of the engine's host: its supervisor's last reading, else this host's."""
    state: EngineState | None = getattr(config, "state", None)
    readings = host_readings()
    host = state.supervisor_host if state is not None else ""
    reading = next((item for item in readings if item["host"] == host), readings[0] if readings else None)
    if reading is None:
        return None
    gpus = [int(gpu["memory_total"]) for gpu in reading.get("gpus", [])]
    return Capacity(gpu_bytes=gpus, ram_bytes=int(reading["memory_total"]) or None, source=str(reading["host"]))


def memory_plan(config: EngineConfig) -> Plan | None:
    """Return the memory plan of ``config`` on its host, or None without a model config."""
    try:
        return plan_for(config, capacity_for(config))
    except PlanError:
        return None


def refuse_external(config: EngineConfig) -> None:
    """Raise :class:`EngineRefused` for an external engine: the portal does not start or stop it."""
    if config.is_external:
        raise EngineRefused(
            f"{config.name} is an external engine: the portal does not start or stop it, only routes to it. "
            f"`python manage.py engine remove {config.name}` takes it out of the rotation."
        )


def check_fits(config: EngineConfig, *, override: bool = False) -> Plan | None:
    """Return the plan; raise :class:`EngineRefused` when it does not fit and nobody overrides."""
    refuse_external(config)
    plan = memory_plan(config)
    if plan is not None and plan.fits is False and not (override or config.ignore_memory_plan):
        advice = " ".join(plan.advice[:2])
        raise EngineRefused(f"{config.name} does not fit: {'; '.join(plan.problems)} {advice}".strip(), plan)
    return plan


def start_engine(config: EngineConfig, *, override: bool = False) -> None:
    """Ask for ``config`` to run. Clears a crash loop. Raises :class:`EngineRefused`."""
    check_fits(config, override=override)
    config.desired_state = EngineConfig.Desired.RUNNING
    fields = ["desired_state", "updated_at"]
    state: EngineState | None = getattr(config, "state", None)
    if state is not None and state.state in (EngineState.State.CRASHED, EngineState.State.CRASH_LOOP):
        config.restart_requested_at = timezone.now()
        fields.append("restart_requested_at")
    config.save(update_fields=fields)


def stop_engine(config: EngineConfig) -> None:
    """Ask for ``config`` to stop. Raises :class:`EngineRefused` for an external engine."""
    refuse_external(config)
    config.desired_state = EngineConfig.Desired.STOPPED
    config.save(update_fields=["desired_state", "updated_at"])


def restart_engine(config: EngineConfig, *, override: bool = False) -> None:
    """Ask for a fresh launch of ``config`` (also from a crash loop). Raises :class:`EngineRefused`."""
    check_fits(config, override=override)
    config.desired_state = EngineConfig.Desired.RUNNING
    config.restart_requested_at = timezone.now()
    config.save(update_fields=["desired_state", "restart_requested_at", "updated_at"])
