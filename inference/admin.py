"""Django admin for engine configs: the form refuses impossible values, unsafe flags and misfits."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from inference import desired_state
from inference.forms import EngineConfigForm
from inference.models import EngineConfig, EngineState

STATE_FIELDS = (
    "state",
    "progress",
    "message",
    "diagnosis",
    "remedies",
    "pid",
    "base_url",
    "crash_count",
    "launched_at",
    "ready_at",
    "exited_at",
    "heartbeat_at",
    "supervisor_host",
)


class EngineStateInline(admin.StackedInline):  # type: ignore[type-arg]
    model = EngineState
    can_delete = False
    extra = 0
    fields = STATE_FIELDS
    readonly_fields = STATE_FIELDS
    verbose_name = "actual state (written by the supervisor)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EngineConfig)
class EngineConfigAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = EngineConfigForm
    list_display = ["name", "kind", "served_model_name", "device", "desired_state", "actual_state"]
    list_filter = ["kind", "device", "desired_state"]
    search_fields = ["name", "served_model_name", "model"]
    inlines = [EngineStateInline]
    actions = ["start", "stop", "restart"]
    fieldsets = [
        (None, {"fields": ["name", "served_model_name", "model", "device", "desired_state"]}),
        ("Memory and batching", {"fields": ["dtype", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
                                            "cpu_kv_cache_gib", "kv_cache_dtype", "ignore_memory_plan"]}),
        ("Parallelism and scheduling", {"fields": ["tensor_parallel_size", "pipeline_parallel_size",
                                                   "enable_chunked_prefill", "enable_prefix_caching",
                                                   "scheduling_policy", "reasoning_parser", "extra_flags"]}),
    ]  # fmt: skip

    def has_change_permission(self, request: HttpRequest, obj: EngineConfig | None = None) -> bool:
        # External engines are registered with `manage.py engine add-external` (the key is never shown).
        if obj is not None and obj.is_external:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description="actual state")
    def actual_state(self, obj: EngineConfig) -> str:
        state = getattr(obj, "state", None)
        return state.state if state is not None else "—"

    def _apply(self, request: HttpRequest, queryset: QuerySet[EngineConfig], action: str) -> None:
        change = {
            "start": desired_state.start_engine,
            "stop": desired_state.stop_engine,
            "restart": desired_state.restart_engine,
        }
        for config in queryset.select_related("state"):
            try:
                change[action](config)
            except desired_state.EngineRefused as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
            else:
                self.message_user(request, f"{config.name}: {action} requested.")

    @admin.action(description="Start the selected engines")
    def start(self, request: HttpRequest, queryset: QuerySet[EngineConfig]) -> None:
        self._apply(request, queryset, "start")

    @admin.action(description="Stop the selected engines")
    def stop(self, request: HttpRequest, queryset: QuerySet[EngineConfig]) -> None:
        self._apply(request, queryset, "stop")

    @admin.action(description="Restart the selected engines")
    def restart(self, request: HttpRequest, queryset: QuerySet[EngineConfig]) -> None:
        self._apply(request, queryset, "restart")
