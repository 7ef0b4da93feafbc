"""Engine configs (what admins want), engine states (what the supervisor sees) and samples.

The admin pages only change an :class:`EngineConfig` (its settings and its *desired*
state). The supervisor (``manage.py runengine``) is the only writer of :class:`EngineState`
and :class:`EngineSample`; it reconciles the actual process with the desired state.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from inference.vllm_flags import parse_extra_flags, validate_extra_flags

SERVED_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
    "Use letters, digits and . _ : / - only, starting with a letter or digit.",
)
# A hub id ("openai/gpt-oss-20b") or an absolute path; no options smuggled in as "-x".
MODEL_VALIDATOR = RegexValidator(
    r"^(/[^\0\n]*|[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?)$",
    "Give an absolute path to a model folder or a hub id such as openai/gpt-oss-20b.",
)

# Reasoning parsers of vLLM 0.32 worth offering; the model decides which one is right.
REASONING_PARSERS = [
    ("", "none"),
    ("openai_gptoss", "openai_gptoss (gpt-oss, Harmony)"),
    ("deepseek_r1", "deepseek_r1"),
    ("deepseek_v3", "deepseek_v3"),
    ("qwen3", "qwen3"),
    ("glm45", "glm45"),
    ("granite", "granite"),
    ("mistral", "mistral"),
    ("kimi_k2", "kimi_k2"),
    ("minimax_m2", "minimax_m2"),
    ("hunyuan_a13b", "hunyuan_a13b"),
    ("ernie45", "ernie45"),
]


class EngineConfig(models.Model):
    """One engine requests can be routed to: a vLLM server the portal manages, or an external one.

    A *managed* engine is started, watched and stopped by the supervisor from the settings
    below. An *external* engine runs elsewhere (a vLLM server, a production-stack router, an
    llm-d gateway): the portal only knows its ``url``, its API key (encrypted, see
    :mod:`inference.engine_secrets`) and optional CA bundle, and the supervisor probes it
    (:mod:`inference.external_probe`); the launch settings do not apply to it.
    """

    class Kind(models.TextChoices):
        MANAGED = "managed", "managed (started by the portal)"
        EXTERNAL = "external", "external (registered by address)"

    class Device(models.TextChoices):
        CUDA = "cuda", "NVIDIA GPU (cuda)"
        CPU = "cpu", "CPU"

    class DType(models.TextChoices):
        AUTO = "auto", "auto (from the model)"
        BFLOAT16 = "bfloat16", "bfloat16"
        FLOAT16 = "float16", "float16"
        FLOAT32 = "float32", "float32"

    class KVCacheDType(models.TextChoices):
        AUTO = "auto", "auto (same as the model)"
        BFLOAT16 = "bfloat16", "bfloat16"
        FLOAT16 = "float16", "float16"
        FP8 = "fp8", "fp8"
        FP8_E4M3 = "fp8_e4m3", "fp8_e4m3"
        FP8_E5M2 = "fp8_e5m2", "fp8_e5m2"

    class Scheduling(models.TextChoices):
        FCFS = "fcfs", "first come, first served"
        PRIORITY = "priority", "priority"

    class Desired(models.TextChoices):
        RUNNING = "running", "running"
        STOPPED = "stopped", "stopped"

    name = models.SlugField(max_length=64, unique=True, help_text="Short name, used by `engine start NAME`.")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.MANAGED)
    served_model_name = models.CharField(
        max_length=200,
        blank=True,
        validators=[SERVED_NAME_VALIDATOR],
        help_text="The model name clients ask for (the request's `model`). Required for managed engines.",
    )
    model = models.CharField(
        max_length=500,
        validators=[MODEL_VALIDATOR],
        help_text="Absolute path of a model folder, or a Hugging Face hub id.",
    )
    device = models.CharField(max_length=8, choices=Device.choices, default=Device.CPU)
    dtype = models.CharField(max_length=16, choices=DType.choices, default=DType.AUTO)
    max_model_len = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(16), MaxValueValidator(10_485_760)],
        help_text="Context length in tokens (prompt + answer). Empty: the model's own maximum.",
    )
    gpu_memory_utilization = models.FloatField(
        default=0.9,
        validators=[MinValueValidator(0.05), MaxValueValidator(0.98)],
        help_text="Share of each GPU's memory vLLM may use (weights + KV cache). GPU only.",
    )
    tensor_parallel_size = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    pipeline_parallel_size = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    max_num_seqs = models.PositiveIntegerField(
        default=16,
        validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="Most sequences batched at once (concurrent requests).",
    )
    enable_chunked_prefill = models.BooleanField(default=True)
    enable_prefix_caching = models.BooleanField(default=True)
    kv_cache_dtype = models.CharField(max_length=16, choices=KVCacheDType.choices, default=KVCacheDType.AUTO)
    cpu_kv_cache_gib = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="GiB of RAM for the KV cache (VLLM_CPU_KVCACHE_SPACE). CPU only.",
    )
    reasoning_parser = models.CharField(max_length=32, choices=REASONING_PARSERS, blank=True, default="")
    scheduling_policy = models.CharField(max_length=16, choices=Scheduling.choices, default=Scheduling.FCFS)
    extra_flags = models.TextField(
        blank=True,
        default="",
        validators=[validate_extra_flags],
        help_text="More `vllm serve` flags from the allow-list, e.g. `--enforce-eager --max-num-batched-tokens 2048`.",
    )
    desired_state = models.CharField(max_length=16, choices=Desired.choices, default=Desired.STOPPED)
    ignore_memory_plan = models.BooleanField(
        default=False,
        help_text="Start even though the memory planner says this configuration does not fit.",
    )
    # External engines only: where it is, how to authenticate, which models it must serve.
    url = models.CharField(max_length=500, blank=True, default="", help_text="External engines: base URL.")
    api_key_encrypted = models.TextField(blank=True, default="", help_text="Fernet token of the API key.")
    api_key_file = models.CharField(
        max_length=500, blank=True, default="", help_text="External engines: read the API key from this file at use."
    )
    ca_bundle = models.CharField(
        max_length=500, blank=True, default="", help_text="External engines: CA bundle (PEM) to verify TLS with."
    )
    pinned_models = models.JSONField(
        default=list, blank=True, help_text="External engines: models it must serve; empty: what /v1/models lists."
    )
    # A start/restart request newer than the running process makes the supervisor relaunch.
    restart_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "engine"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the config; raise ``ValidationError`` when its extra flags are refused.

        Field validators run only in ``full_clean()``, which the admin form calls but the ORM
        and the shell do not: the allow-list guards the engine's command line, so it is checked
        on every save that writes the flags. (The launch command checks them once more.)
        """
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "extra_flags" in update_fields:
            validate_extra_flags(self.extra_flags)
        super().save(*args, **kwargs)

    @property
    def is_external(self) -> bool:
        return self.kind == self.Kind.EXTERNAL

    def clean(self) -> None:
        """Refuse setting combinations vLLM refuses at start-up, as field errors.

        Raises ``ValidationError`` keyed by field. Invalid extra flags are left to the
        field's own validation. A managed engine needs a served model name.
        """
        if not self.is_external and not self.served_model_name:
            raise ValidationError({"served_model_name": "Required for a managed engine."})
        try:
            flags = dict(parse_extra_flags(self.extra_flags or ""))
        except ValidationError:
            return
        batched = flags.get("--max-num-batched-tokens")
        if not self.enable_chunked_prefill and batched and self.max_model_len and int(batched) < self.max_model_len:
            raise ValidationError(
                {
                    "extra_flags": (
                        f"With chunked prefill off, --max-num-batched-tokens ({batched}) must be at least the max "
                        f"model length ({self.max_model_len}), or vLLM refuses to start: raise it, lower max "
                        "model length, or turn chunked prefill on."
                    )
                }
            )


class EngineState(models.Model):
    """What the supervisor last saw of an engine (written only by the supervisor)."""

    class State(models.TextChoices):
        STOPPED = "stopped", "stopped"
        STARTING = "starting", "starting"
        LOADING = "loading", "loading"
        READY = "ready", "ready"
        STOPPING = "stopping", "stopping"
        CRASHED = "crashed", "crashed"
        CRASH_LOOP = "crash_loop", "crash loop"
        # External engines (written by the probe): why one cannot be used.
        UNREACHABLE = "unreachable", "unreachable"
        UNAUTHORIZED = "unauthorized", "unauthorized"
        INCOMPATIBLE = "incompatible", "not OpenAI-compatible"
        TLS_ERROR = "tls_error", "TLS error"
        DEGRADED = "degraded", "degraded"

    engine = models.OneToOneField(EngineConfig, on_delete=models.CASCADE, primary_key=True, related_name="state")
    state = models.CharField(max_length=16, choices=State.choices, default=State.STOPPED)
    progress = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=300, blank=True, default="")
    failure_kind = models.CharField(max_length=32, blank=True, default="")
    diagnosis = models.TextField(blank=True, default="")
    remedies = models.JSONField(default=list, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    # Where this launch listens: ``unix:PATH`` for a managed engine's socket (its directory is
    # private to the portal's user), the URL for an external one; read through
    # inference.engine_address, never joined to a path by hand.
    base_url = models.CharField(max_length=500, blank=True, default="")
    # This launch's key; only the portal holds it (vLLM checks it on /v1/* only, hence the socket).
    api_key = models.CharField(max_length=100, blank=True, default="")
    fingerprint = models.CharField(max_length=64, blank=True, default="")
    launched_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    exited_at = models.DateTimeField(null=True, blank=True)
    last_exit_code = models.IntegerField(null=True, blank=True)
    crash_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    supervisor_host = models.CharField(max_length=200, blank=True, default="")
    supervisor_pid = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    running_requests = models.PositiveIntegerField(default=0)
    waiting_requests = models.PositiveIntegerField(default=0)
    kv_cache_usage = models.FloatField(null=True, blank=True)
    # External engines: the model names its /v1/models listed at the last probe.
    served_models = models.JSONField(default=list, blank=True)
    log_tail = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.engine_id}: {self.state}"


class EngineSample(models.Model):
    """One reading of an engine's /metrics, kept for the charts of the last hour."""

    engine = models.ForeignKey(EngineConfig, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    running = models.PositiveIntegerField(default=0)
    waiting = models.PositiveIntegerField(default=0)
    kv_cache_usage = models.FloatField(null=True, blank=True)
    prompt_tokens_per_s = models.FloatField(default=0.0)
    generation_tokens_per_s = models.FloatField(default=0.0)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["engine", "at"])]

    def __str__(self) -> str:
        return f"{self.engine_id} @ {self.at:%H:%M:%S}"


class HostReading(models.Model):
    """The latest GPU, CPU and memory reading of an engine host (written by its supervisor)."""

    host = models.CharField(max_length=200, unique=True)
    at = models.DateTimeField()
    gpus = models.JSONField(default=list, blank=True)
    cpu_count = models.PositiveIntegerField(default=0)
    cpu_percent = models.FloatField(default=0.0)
    memory_used = models.BigIntegerField(default=0)
    memory_total = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["host"]

    def __str__(self) -> str:
        return self.host
