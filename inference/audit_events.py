"""What the generation service and the engines write to the audit trail.

One ``generation`` event per generation, written by ``settle_usage`` inside the settlement
transaction (so the stored answer, the ledger and the event commit together or not at all);
one ``generation`` event with outcome ``over_quota``, ``rate_limited`` or ``refused`` for a
request refused before it started; engine config changes (before and after) and the
supervisor's start, stop, crash and restart.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.forms.models import model_to_dict

from inference.models import EngineConfig
from portal.audit.trail import record, record_in_context

if TYPE_CHECKING:
    from inference.generation import Outcome, Prepared
    from inference.rejections import GenerationRejected

GENERATION = "generation"
ENGINE_CONFIG_CREATED = "engine.config_created"
ENGINE_CONFIG_CHANGED = "engine.config_changed"
ENGINE_CONFIG_DELETED = "engine.config_deleted"
# The supervisor's view of the process: engine.started, engine.stopped, engine.crashed, engine.restarted.
ENGINE_PREFIX = "engine."
# The refusal codes of GenerationRejected that have their own outcome; any other is "refused".
REFUSAL_OUTCOMES = {"quota_exceeded": "over_quota", "rate_limited": "rate_limited"}
# What prepare refuses: no engine ready, the ledger's refusals.
REFUSED_BY_PREPARE = frozenset(
    {"engine_unavailable", "quota_exceeded", "rate_limited", "refused_by_plugin", "plugin_failed"}
)
LOST = "lost"
# A generation whose engine dropped its stream (the process died: killed, out of memory, ...).
# The answer is kept as interrupted (or failed, before any text); the audit outcome says why.
ENGINE_CRASH = "engine_crash"
ENGINE_DROPPED_STREAM = "engine_disconnected"


def _user(user_id: int | None) -> Any:
    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


def record_generation(prepared: Prepared, outcome: Outcome) -> None:
    """Write the generation's one event (call inside the settlement transaction; raises on failure)."""
    status = outcome.status
    if outcome.error_code == LOST:
        status = LOST
    elif outcome.error_code == ENGINE_DROPPED_STREAM:
        status = ENGINE_CRASH
    record(
        GENERATION,
        actor=prepared.user if prepared.user is not None else _user(prepared.user_id),
        target=outcome.request_id,
        outcome=status,
        request_id=outcome.request_id,
        channel=prepared.source,
        model=outcome.model,
        engine=outcome.engine,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        reasoning_tokens=outcome.reasoning_tokens,
        ttft_ms=outcome.ttft_ms,
        duration_ms=outcome.duration_ms,
        data={
            "finish_reason": outcome.finish_reason,
            "usage_estimated": outcome.usage_estimated,
            "error_code": outcome.error_code,
            "api_key": prepared.api_key_prefix or "",
        },
        content=_texts(prepared, outcome),
    )


def _texts(prepared: Prepared, outcome: Outcome) -> dict[str, str]:
    """The question and the answer (kept, redacted, only under PORTAL_AUDIT_CONTENT_DAYS)."""
    questions = [message["content"] for message in prepared.request.messages if message.get("role") == "user"]
    return {"prompt": questions[-1] if questions else "", "answer": outcome.content}


def record_refusal(user_id: int, source: str, model: str | None, refusal: GenerationRejected) -> None:
    """Write the event of a generation refused by ``prepare`` (over quota, rate limited, refused).

    Call it after the transaction that called ``prepare`` has ended (it rolled back with the
    refusal). Refusals of bad input (``invalid_params``) and others are not audited.
    """
    if refusal.code not in REFUSED_BY_PREPARE:
        return
    record(
        GENERATION,
        actor=_user(user_id),
        outcome=REFUSAL_OUTCOMES.get(refusal.code, "refused"),
        channel=source,
        model=str(refusal.details.get("model") or model or ""),
        data={"code": refusal.code, "message": refusal.message},
    )


def record_lost(user_id: int, source: str, model: str, request_id: str) -> None:
    """Write the event of an answer whose web process died before settling it (outcome ``lost``)."""
    record(GENERATION, actor=_user(user_id), target=request_id, outcome=LOST, request_id=request_id,
           channel=source, model=model)  # fmt: skip


def config_values(config: EngineConfig) -> dict[str, Any]:
    """Return an engine config's settings as JSON values (what before/after show)."""
    values = {name: value for name, value in model_to_dict(config).items() if name != "id"}
    if values.get("api_key_encrypted"):
        # An external engine's key never enters the append-only trail, not even encrypted: a
        # fingerprint of the token shows that it was set or replaced.
        token = str(values["api_key_encrypted"]).encode()
        values["api_key_encrypted"] = f"set (sha256 {hashlib.sha256(token).hexdigest()[:12]})"
    parsed: dict[str, Any] = json.loads(json.dumps(values, cls=DjangoJSONEncoder))
    return parsed


def record_config_change(before: dict[str, Any] | None, config: EngineConfig | None, name: str) -> None:
    """Write a config created/changed/deleted event with the values before and after.

    Only the settings that differ are kept in ``before`` and ``after`` of a change.
    """
    after = config_values(config) if config is not None else None
    if before is None:
        action, data = ENGINE_CONFIG_CREATED, {"after": after}
    elif after is None:
        action, data = ENGINE_CONFIG_DELETED, {"before": before}
    else:
        changed = sorted(key for key in after if before.get(key) != after[key])
        if not changed:
            return
        action = ENGINE_CONFIG_CHANGED
        data = {"before": {key: before.get(key) for key in changed}, "after": {key: after[key] for key in changed}}
    record_in_context(action, target=name, data=data)


def record_engine(action: str, config: EngineConfig, *, outcome: str = "ok", **data: Any) -> None:
    """Write what the supervisor did to an engine's process (``engine.started`` etc.)."""
    record(ENGINE_PREFIX + action, target=config.name, outcome=outcome, model=config.served_model_name,
           engine=config.name, data=data)  # fmt: skip


@receiver(pre_save, sender=EngineConfig)
def _remember_config(sender: Any, instance: EngineConfig, **kwargs: Any) -> None:
    old = EngineConfig.objects.filter(pk=instance.pk).first() if instance.pk else None
    instance._audit_before = config_values(old) if old is not None else None  # type: ignore[attr-defined]


@receiver(post_save, sender=EngineConfig)
def _record_config(sender: Any, instance: EngineConfig, **kwargs: Any) -> None:
    record_config_change(getattr(instance, "_audit_before", None), instance, instance.name)


@receiver(post_delete, sender=EngineConfig)
def _record_config_deleted(sender: Any, instance: EngineConfig, **kwargs: Any) -> None:
    record_config_change(config_values(instance), None, instance.name)
