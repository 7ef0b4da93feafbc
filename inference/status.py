"""What users and admins see of the engines: a JSON snapshot, pushed over /ws/status/."""

from __future__ import annotations

from typing import Any

from inference.engine_router import describe
from inference.models import EngineConfig

STATUS_GROUP = "engine-status"


def snapshot() -> list[dict[str, Any]]:
    """Return the public state of every engine (name, model, state, progress, message)."""
    return [
        {
            "name": view.name,
            "model": view.served_model,
            "state": view.state,
            "progress": view.progress,
            "message": view.message,
            "reasoning": view.reasoning,
        }
        for view in (describe(config) for config in EngineConfig.objects.select_related("state").order_by("name"))
    ]


def admin_snapshot() -> list[dict[str, Any]]:
    """Return what admins see of every engine: the public state plus process and failure details."""
    rows = []
    for config in EngineConfig.objects.select_related("state").order_by("name"):
        view = describe(config)
        state = getattr(config, "state", None)
        rows.append(
            {
                "name": config.name,
                "model": config.served_model_name,
                "desired": config.desired_state,
                "state": view.state,
                "progress": view.progress,
                "message": view.message,
                "pid": state.pid if state else None,
                "url": state.base_url if state else "",
                "port": config.port,
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
