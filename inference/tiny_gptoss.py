"""A tiny gpt-oss model for trying the reasoning path without a GPU (and for the tests).

``engine_side/tiny_gptoss.py``, run with the engine's Python, writes a 52 MB gpt-oss
checkpoint with hand-set weights and a vocabulary rebuilt from the Harmony package, offline
in a few seconds. Served with ``--reasoning-parser openai_gptoss`` it always answers with
reasoning ("The user says hi") and then content ("Hello! I am a tiny model.").

The folder's name carries a digest of the builder's source, so a changed builder makes a new
folder instead of serving a stale one; an unchanged builder reuses the folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
from pathlib import Path

from django.conf import settings

from inference.demo import DemoUnavailable, create_demo_engine
from inference.launch_command import engine_python
from inference.models import EngineConfig

TINY_GPTOSS_NAME = "tiny-gpt-oss"
TINY_GPTOSS_SERVED_NAME = "tiny-gpt-oss"
TINY_GPTOSS_REASONING = "The user says hi"
TINY_GPTOSS_ANSWER = "Hello! I am a tiny model."
BUILDER = Path(__file__).resolve().parent / "engine_side" / "tiny_gptoss.py"
FOLDER_PREFIX = "tiny-gpt-oss-"
BUILD_TIMEOUT = 600


def builder_digest() -> str:
    """Return a short digest of the builder's source (the cache folder's version)."""
    return hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:12]


def tiny_gptoss_folder(models_dir: Path) -> Path:
    """Return where the checkpoint of the current builder lives under ``models_dir``."""
    return models_dir / f"{FOLDER_PREFIX}{builder_digest()}"


def prepare_tiny_gptoss(models_dir: Path) -> tuple[Path, bool]:
    """Build the tiny gpt-oss checkpoint into ``models_dir`` once; return (folder, whether built now).

    Concurrent callers wait on a file lock and reuse the folder the first one built. Raises
    :class:`~inference.demo.DemoUnavailable` when the engine environment is missing, the
    models folder cannot be written, or the builder fails (with the end of its output);
    nothing half-written is left under the folder's name.
    """
    python = engine_python()
    if not python.exists():
        raise DemoUnavailable(f"The engine environment {settings.ENGINE_VENV} is missing: run `make engine`.")
    target = tiny_gptoss_folder(models_dir)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        lock = (models_dir / ".prepare.lock").open("w")
    except OSError as exc:
        raise DemoUnavailable(f"The models folder {models_dir} cannot be used: {exc.strerror or exc}.") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
            return target, False
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv
                [str(python), str(BUILDER), str(target)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DemoUnavailable(f"Building the tiny gpt-oss model took over {BUILD_TIMEOUT} s.") from None
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise DemoUnavailable(f"Building the tiny gpt-oss model failed ({result.returncode}):\n{tail}")
    return target, True


def create_tiny_gptoss_engine(
    model_path: Path,
    *,
    name: str = TINY_GPTOSS_NAME,
    max_model_len: int = 4096,
    max_num_seqs: int = 8,
    cpu_kv_cache_gib: int = 1,
) -> EngineConfig:
    """Create a CPU engine config for the tiny gpt-oss model, with the gpt-oss reasoning parser."""
    return create_demo_engine(
        model_path,
        name=name,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        cpu_kv_cache_gib=cpu_kv_cache_gib,
        served_model_name=TINY_GPTOSS_SERVED_NAME,
        reasoning_parser="openai_gptoss",
    )
