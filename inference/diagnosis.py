"""Read vLLM's log: how far loading has come, and why a launch failed with what to change.

The patterns were taken from real vLLM 0.32 logs (tests/data/vllm-logs/). A diagnosis
names the failure in one sentence and lists the concrete settings to change, using the
engine's current values so an admin can act on it directly.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from inference.engine_address import engine_address

if TYPE_CHECKING:
    from inference.models import EngineConfig

# Loading milestones in the order vLLM logs them, with the share of start-up they mark.
_MILESTONES: list[tuple[re.Pattern[str], float]] = [
    (re.compile(r"non-default args:"), 0.05),
    (re.compile(r"Resolved architecture:"), 0.10),
    (re.compile(r"Initializing a V1 LLM engine"), 0.15),
    (re.compile(r"Starting to load model"), 0.25),
    (re.compile(r"Loading weights took|Model loading took"), 0.70),
    (re.compile(r"KV cache size:|Available KV cache memory"), 0.80),
    (re.compile(r"Capturing CUDA graphs|Graph capturing finished"), 0.85),
    (re.compile(r"init engine \(profile, create kv cache, warmup model\) took"), 0.90),
    (re.compile(r"Starting vLLM server on|Starting vLLM API server"), 0.95),
    (re.compile(r"Application startup complete"), 0.98),
]
# "Loading safetensors checkpoint shards:  50% Completed | 1/2": weights are 25%..70%.
_SHARDS = re.compile(r"Loading \w+ checkpoint shards:\s+\d+% Completed \| (\d+)/(\d+)")
_WEIGHTS_FROM, _WEIGHTS_TO = 0.25, 0.70


def progress_of(line: str) -> float | None:
    """Return the start-up progress (0..1) a log line marks, or None for other lines."""
    shards = _SHARDS.search(line)
    if shards:
        done, total = int(shards.group(1)), max(1, int(shards.group(2)))
        return _WEIGHTS_FROM + (_WEIGHTS_TO - _WEIGHTS_FROM) * min(1.0, done / total)
    for pattern, share in _MILESTONES:
        if pattern.search(line):
            return share
    return None


@dataclass(frozen=True)
class Diagnosis:
    """Why a launch failed: a kind, one sentence, and the settings to change."""

    kind: str
    summary: str
    remedies: list[str] = field(default_factory=list)
    evidence: str = ""


Rule = Callable[[re.Match[str], "EngineConfig"], Diagnosis]


def _oom(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    remedies = [
        f"Lower max model length (now {config.max_model_len or 'the model maximum'}), e.g. to 8192.",
        f"Lower max sequences (now {config.max_num_seqs}).",
        f"Use KV cache dtype fp8 (now {config.kv_cache_dtype}).",
        f"Split the model over more GPUs: raise tensor parallel size (now {config.tensor_parallel_size}).",
    ]
    if config.device == config.Device.CUDA:
        remedies.insert(
            2,
            f"If other programs use the GPU, lower GPU memory utilization (now {config.gpu_memory_utilization}); "
            "if the GPU is vLLM's alone, raise it (at most 0.95).",
        )
    if config.dtype == config.DType.FLOAT32:
        remedies.append("Use dtype bfloat16 or float16 instead of float32 (half the weight memory).")
    return Diagnosis("out_of_memory", "The engine ran out of GPU memory while loading or serving.", remedies)


def _kv_too_small(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    wanted, room = int(match.group(1)), int(match.group(2))
    remedies = [f"Lower max model length to at most {room} (now {wanted})."]
    if config.device == config.Device.CPU:
        remedies.append(f"Or give the KV cache more RAM: raise CPU KV cache GiB (now {config.cpu_kv_cache_gib}).")
    else:
        remedies.append(f"Or raise GPU memory utilization (now {config.gpu_memory_utilization}).")
        remedies.append(f"Or use KV cache dtype fp8 (now {config.kv_cache_dtype}).")
    return Diagnosis(
        "kv_cache_too_small",
        f"The KV cache holds {room} tokens, less than one request of max model length {wanted}.",
        remedies,
    )


def _context_too_long(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    wanted = match.group(1)
    # "max_position_embeddings=8192.0 or model_max_length=None in model's config.json"
    limit = re.search(r"\d+", match.group(2))
    most = limit.group(0) if limit else "the model's maximum"
    return Diagnosis(
        "context_too_long",
        f"Max model length {wanted} is longer than the model supports ({most} tokens).",
        [f"Lower max model length to at most {most} (now {wanted}), or leave it empty."],
    )


def _model_not_found(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    from inference.demo import DEMO_FOLDER

    if config.model.startswith("/"):
        remedies = [f"Check that {config.model} exists on the engine host and holds config.json and the weights."]
        if PurePosixPath(config.model).name == DEMO_FOLDER:
            remedies.append(
                "This is the demo model: run `python manage.py preparedemo` on the engine host to prepare its "
                "folder again, then start the engine."
            )
    else:
        remedies = [
            f"Check the hub id {config.model!r} (spelling, access rights, HF_TOKEN for gated models).",
            "Without internet on the engine host, download the model elsewhere and give its folder as the model.",
        ]
    return Diagnosis("model_not_found", f"The model {config.model} could not be found or loaded.", remedies)


def _address_in_use(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    # The kind keeps its old name (stored failures and alerts say "port_in_use"), but a managed
    # engine binds no TCP port of its own: its socket, or a port vLLM picks for itself, was taken.
    address = engine_address(config)
    where = (address.socket_path if address else "") or f"{config.name}.sock in PORTAL_ENGINE_SOCKET_DIR"
    return Diagnosis(
        "port_in_use",
        f"The engine could not bind its socket {where}, or a port vLLM picks for itself is taken.",
        [
            f"If a file or folder is at {where}, remove it (the supervisor removes only a stale socket there); "
            f"if a program listens on it (`ss -xlp | grep {config.name}.sock`), stop it. Then start the engine.",
            "Otherwise another program took a port vLLM chose for its own processes (they change at each "
            "launch): start the engine again, and if it keeps failing see what holds ports with `ss -ltnp`.",
        ],
    )


def _unsupported(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    return Diagnosis(
        "unsupported_architecture",
        f"vLLM does not support the model's architecture {match.group(1)}.",
        ["Use a model whose architecture vLLM supports, or upgrade the engine (requirements-engine.txt)."],
    )


def _bad_flag(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    flag = match.group(1).strip()
    return Diagnosis(
        "bad_flag",
        f"vLLM refused a command-line flag: {flag}.",
        [f"Remove or correct {flag} in the extra flags (now {config.extra_flags.strip() or 'none'})."],
    )


def _no_gpu(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    return Diagnosis(
        "no_gpu",
        "No usable NVIDIA GPU was found by the engine.",
        [
            "Set device to cpu on machines without a GPU.",
            "On a GPU machine, check `nvidia-smi` and that `make engine` installed the CUDA build of vLLM.",
        ],
    )


def _bad_config(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    return Diagnosis(
        "bad_config",
        f"vLLM refused the configuration: {match.group(1).strip()}",
        ["Correct the setting the message names and start the engine again."],
    )


def _engine_died(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    return Diagnosis(
        "engine_died",
        "The engine's worker process died unexpectedly.",
        [
            "See the log for the cause. If the kernel's out-of-memory killer ended it (`dmesg | grep -i oom`), "
            f"{_use_less_memory(config)}.",
        ],
    )


def _kv_dtype_unsupported(match: re.Match[str], config: EngineConfig) -> Diagnosis:
    return Diagnosis(
        "kv_cache_dtype_unsupported",
        f"This machine cannot run KV cache dtype {config.kv_cache_dtype}: {match.group(0)}",
        [f"Set KV cache dtype to auto (now {config.kv_cache_dtype})."],
    )


def _use_less_memory(config: EngineConfig) -> str:
    """The settings that lower an engine's memory, with their current values."""
    advice = (
        f"lower max model length (now {config.max_model_len or 'the model maximum'}) "
        f"or max sequences (now {config.max_num_seqs})"
    )
    if config.device == config.Device.CPU:
        advice += f", or CPU KV cache GiB (now {config.cpu_kv_cache_gib})"
    return advice


def _signalled(code: int | None) -> signal.Signals | None:
    """The signal that ended the engine: the guard exits with 128 + N, Popen reports -N."""
    if code is None or code == 0:
        return None
    number = -code if code < 0 else code - 128
    try:
        return signal.Signals(number)
    except ValueError:
        return None


def _killed(signum: signal.Signals, config: EngineConfig) -> Diagnosis:
    if signum == signal.SIGKILL:
        return Diagnosis(
            "killed",
            "The engine was killed (SIGKILL) without an error message.",
            [
                "If nobody killed it, the kernel's out-of-memory killer may have: check `dmesg | grep -i oom`, "
                f"and {_use_less_memory(config)}.",
            ],
        )
    return Diagnosis(
        "killed",
        f"The engine was ended by {signum.name} (signal {signum.value}) without an error message.",
        [
            "SIGSEGV, SIGBUS, SIGILL or SIGABRT mean a crash in native code: check that `make engine` installed "
            "the engine build for this machine (CPU or CUDA) and driver; other signals came from outside the "
            "portal (`journalctl`, `dmesg`).",
        ],
    )


# Most specific first: a log may contain several of these (an OOM also ends in a traceback).
_RULES: list[tuple[re.Pattern[str], Rule]] = [
    (
        re.compile(
            r"max seq len \((\d+)\).*?(?:estimated maximum model length is|tokens that can be stored in KV cache \()"
            r"\s*(\d+)"
        ),
        _kv_too_small,
    ),
    (
        re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError|No available memory for the cache"),
        _oom,
    ),
    (
        re.compile(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len \((.*?)\)"),
        _context_too_long,
    ),
    (re.compile(r"Model architectures? (\[.*?\]) (?:are|is) not supported"), _unsupported),
    (re.compile(r"error: (unrecognized arguments: .*|argument --[\w-]+.*)"), _bad_flag),
    (
        re.compile(r"FP8 KV cache (?:on CPU requires|requires head_size divisible by 32 on CPU).*"),
        _kv_dtype_unsupported,
    ),
    (re.compile(r"Address already in use"), _address_in_use),
    (
        re.compile(
            r"Repo id must be in the form|Repository Not Found"
            r"|is not a local folder and is not a valid model identifier"
            r"|We couldn't connect to 'https://huggingface.co'|does not appear to have a file named config.json"
            r"|LocalEntryNotFoundError|No such file or directory: .*config\.json"
        ),
        _model_not_found,
    ),
    (re.compile(r"No CUDA GPUs are available|Failed to infer device type|Found no NVIDIA driver"), _no_gpu),
    (
        re.compile(r"Engine core (?:proc )?.*died unexpectedly|EngineDeadError|EngineCore encountered a fatal error"),
        _engine_died,
    ),
    (re.compile(r"Value error, (.*)"), _bad_config),
]
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def diagnose(lines: Iterable[str], config: EngineConfig, exit_code: int | None = None) -> Diagnosis:
    """Return why the launch that wrote ``lines`` and ended with ``exit_code`` failed, and what to change.

    Pass only the lines since the engine was ready when it failed after being ready: start-up
    warnings must not explain a later crash. Known messages win; then a killing signal (the
    out-of-memory killer leaves no message); then the last exception line; else "exited
    without an error message".
    """
    text = list(lines)
    for pattern, rule in _RULES:
        for line in text:
            match = pattern.search(line)
            if match:
                diagnosis = rule(match, config)
                return Diagnosis(diagnosis.kind, diagnosis.summary, diagnosis.remedies, evidence=line.strip()[:500])
    signum = _signalled(exit_code)
    if signum is not None:
        return _killed(signum, config)
    for line in reversed(text):
        match = _EXCEPTION.match(line.strip())
        if match:
            return Diagnosis(
                "error",
                f"The engine stopped with {match.group(1)}: {match.group(2)[:300]}",
                ["See the log below for details."],
                evidence=line.strip()[:500],
            )
    return Diagnosis("exited", "The engine exited without an error message.", ["See the log below for details."])
