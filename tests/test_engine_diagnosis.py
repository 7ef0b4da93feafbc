"""The diagnosis of recorded vLLM failure logs, and load progress read from a real start-up log."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.diagnosis import diagnose, progress_of
from inference.models import EngineConfig

LOGS = Path(__file__).resolve().parent / "data" / "vllm-logs"


def config(**fields) -> EngineConfig:
    defaults = {
        "name": "demo",
        "served_model_name": "demo",
        "model": "/srv/models/no-such-model",
        "port": 8100,
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
    assert "/srv/models/no-such-model" in found.remedies[0]
    assert "preparedemo" in found.remedies[1]


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


def test_a_taken_port_says_which_port():
    found = diagnosis_of("port-in-use", port=8394)
    assert found.kind == "port_in_use"
    assert "8394" in found.summary
    assert "now 8394" in found.remedies[0]


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
