"""The diagnosis of recorded vLLM failure logs, and load progress read from a real start-up log."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.diagnosis import diagnose, progress_of
from inference.models import EngineConfig, EngineState

LOGS = Path(__file__).resolve().parent / "data" / "vllm-logs"


def config(**fields) -> EngineConfig:
    defaults = {
        "name": "demo",
        "served_model_name": "demo",
        "model": "/srv/models/no-such-model",
        "max_model_len": 100000,
        "cpu_kv_cache_gib": 1,
        "extra_flags": "--no-such-flag 3",
    }
    return EngineConfig(**{**defaults, **fields})


def diagnosis_of(name: str, **fields):
    return diagnose((LOGS / f"{name}.log").read_text().splitlines(), config(**fields))


def test_a_missing_model_folder_is_diagnosed_with_the_path_to_check():
    found = diagnosis_of("model-not-found")
    assert found.kind == "model_not_found"
    assert found.remedies == [
        "Check that /srv/models/no-such-model exists on the engine host and holds config.json and the weights."
    ]


def test_a_missing_demo_model_folder_points_to_preparedemo():
    found = diagnosis_of("model-not-found", model="/srv/data/models/SmolLM2-135M-Instruct")
    assert found.kind == "model_not_found"
    assert "run `python manage.py preparedemo` on the engine host" in found.remedies[1]


def test_a_hub_model_without_network_is_diagnosed_as_not_found():
    found = diagnosis_of("hub-model-missing", model="acme-labs/no-such-model")
    assert found.kind == "model_not_found"
    assert "acme-labs/no-such-model" in found.remedies[0]


def test_an_unknown_flag_names_the_flag_to_remove():
    found = diagnosis_of("bad-flag")
    assert found.kind == "bad_flag"
    assert "--no-such-flag" in found.summary
    assert "extra flags (now --no-such-flag 3)" in found.remedies[0]


def test_an_unsupported_architecture_is_named():
    found = diagnosis_of("unsupported-architecture")
    assert found.kind == "unsupported_architecture"
    assert "['FooBarForCausalLM']" in found.summary


def test_an_address_in_use_names_the_socket_of_the_failed_launch():
    launched = config(name="busy")
    EngineState(engine=launched, base_url="unix:/srv/portal/run/busy.sock")
    found = diagnose((LOGS / "port-in-use.log").read_text().splitlines(), launched)
    assert found.kind == "port_in_use", "stored failures and alerts know the kind by its old name"
    assert "socket /srv/portal/run/busy.sock" in found.summary
    assert "If a file or folder is at /srv/portal/run/busy.sock, remove it" in found.remedies[0]
    assert "`ss -xlp | grep busy.sock`" in found.remedies[0]
    assert "port vLLM chose for its own processes" in found.remedies[1]
    assert "127.0.0.1" not in " ".join([found.summary, *found.remedies])


def test_an_address_in_use_without_a_launch_address_names_the_socket_directory():
    found = diagnosis_of("port-in-use")
    assert found.kind == "port_in_use"
    assert "socket demo.sock in PORTAL_ENGINE_SOCKET_DIR" in found.summary


def test_a_context_longer_than_the_model_gives_the_limit():
    found = diagnosis_of("context-too-long")
    assert found.kind == "context_too_long"
    assert found.remedies == ["Lower max model length to at most 8192 (now 100000), or leave it empty."]


def test_a_kv_cache_too_small_for_one_request_gives_the_length_that_fits():
    found = diagnosis_of("kv-cache-too-small")
    assert found.kind == "kv_cache_too_small"
    assert found.remedies[0] == "Lower max model length to at most 46464 (now 100000)."
    assert "raise CPU KV cache GiB (now 1)" in found.remedies[1]


def test_cuda_out_of_memory_lists_the_settings_to_change():
    found = diagnosis_of(
        "cuda-out-of-memory", device="cuda", max_model_len=131072, gpu_memory_utilization=0.95, max_num_seqs=256
    )
    assert found.kind == "out_of_memory"
    remedies = " ".join(found.remedies)
    assert "max model length (now 131072)" in remedies
    assert "max sequences (now 256)" in remedies
    assert "GPU memory utilization (now 0.95)" in remedies
    assert "tensor parallel size (now 1)" in remedies
    assert "CUDA out of memory" in found.evidence


def test_a_log_without_a_known_error_falls_back_to_the_last_exception():
    found = diagnose(["loading", "RuntimeError: something odd happened"], config())
    assert found.kind == "error"
    assert "RuntimeError: something odd happened" in found.summary
    assert diagnose(["nothing to see"], config()).kind == "exited"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("(APIServer pid=1) INFO [api_utils.py:286] non-default args: {'host': '127.0.0.1'}", 0.05),
        ("(Worker pid=2) INFO [cpu_model_runner.py:68] Starting to load model /m...", 0.25),
        ("Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:00<00:00,  1.83it/s]", 0.475),
        ("(EngineCore pid=3) INFO [kv_cache_utils.py:2327] CPU KV cache size: 46,592 tokens", 0.80),
        ("(APIServer pid=1) INFO [entry.py:140] Starting vLLM server on http://127.0.0.1:8399", 0.95),
        ("(APIServer pid=1) INFO [launcher.py:195] Route: /health, Methods: GET", None),
    ],
)
def test_load_progress_comes_from_vllms_milestones(line, expected):
    assert progress_of(line) == (pytest.approx(expected) if expected is not None else None)


def startup_until_ready() -> list[str]:
    """A real start-up (with its warning that max model length exceeds the model's) up to ready."""
    lines = (LOGS / "kv-cache-too-small.log").read_text().splitlines()
    end = next(index for index, line in enumerate(lines) if "Loading weights took" in line)
    return [*lines[: end + 1], "(APIServer pid=1) INFO [launcher.py:46] Application startup complete."]


def test_start_up_warnings_explain_a_failed_start_but_not_a_crash_after_ready():
    startup = startup_until_ready()
    assert diagnose(startup, config(), exit_code=1).kind == "context_too_long", "the whole launch when never ready"
    assert diagnose([], config(), exit_code=137).kind == "killed", "only the lines since ready"


def test_a_killing_signal_wins_over_an_earlier_exception_line():
    since_ready = [
        "(APIServer pid=1) WARNING [serving.py:210] Request failed: ValueError: prompt too long",
        "ValueError: This model's maximum context length is 2048 tokens.",
    ]
    killed = diagnose(since_ready, config(max_num_seqs=8, cpu_kv_cache_gib=4), exit_code=137)
    assert killed.kind == "killed"
    assert "SIGKILL" in killed.summary
    assert "out-of-memory killer" in killed.remedies[0]
    assert "max sequences (now 8)" in killed.remedies[0]
    assert "CPU KV cache GiB (now 4)" in killed.remedies[0]
    assert diagnose(since_ready, config(), exit_code=-9).kind == "killed", "a guard killed itself reports -9"
    crashed = diagnose(since_ready, config(), exit_code=139)
    assert crashed.kind == "killed"
    assert "SIGSEGV (signal 11)" in crashed.summary
    assert diagnose(since_ready, config(), exit_code=1).kind == "error", "a plain exit falls back to the exception"


def test_an_fp8_kv_cache_the_cpu_cannot_run_says_to_use_auto():
    line = (
        "(EngineCore pid=3) ERROR [core.py:1510] "
        "NotImplementedError: FP8 KV cache on CPU requires x86 with AVX-512 or AMX."
    )
    found = diagnose(["Traceback (most recent call last):", line], config(kv_cache_dtype="fp8"))
    assert found.kind == "kv_cache_dtype_unsupported"
    assert found.remedies == ["Set KV cache dtype to auto (now fp8)."]
