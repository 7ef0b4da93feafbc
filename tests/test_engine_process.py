"""One launch's output and environment: lines split at carriage returns, failures read since ready, no secrets."""

from __future__ import annotations

import pytest

from inference.engine_process import LaunchOutput, engine_environment, split_output


def test_progress_bar_drawings_become_lines_as_soon_as_the_next_one_starts():
    chunks = [
        b"(Worker pid=2) INFO Starting to load model /m...\n",
        b"\rLoading safetensors checkpoint shards:   0% Completed | 0/2",
        b"\rLoading safetensors checkpoint shards:  50% Completed | 1/2",
    ]
    lines = split_output(chunks)
    assert next(lines) == "(Worker pid=2) INFO Starting to load model /m..."
    assert next(lines) == "Loading safetensors checkpoint shards:   0% Completed | 0/2"
    assert list(lines) == ["Loading safetensors checkpoint shards:  50% Completed | 1/2"], "the rest at the end"


def test_line_ends_and_characters_split_across_reads_are_joined_again():
    chunks = [b"first\r", b"\nsecond\r\n\r\n", b"caf\xc3", b"\xa9 \n", b"no newline at the end"]
    assert list(split_output(chunks)) == ["first", "second", "café", "no newline at the end"]


def test_failures_after_ready_are_read_from_the_lines_since_ready():
    output = LaunchOutput()
    for line in ["WARNING start-up noise", "INFO Application startup complete."]:
        output.add(line)
    assert output.failure_lines() == ["WARNING start-up noise", "INFO Application startup complete."]
    output.mark_ready()
    assert output.failure_lines() == []
    output.add("ERROR after ready")
    assert output.failure_lines() == ["ERROR after ready"]


def test_lines_since_ready_survive_the_kept_window_rolling_over(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("inference.engine_process.KEPT_LINES", 3)
    output = LaunchOutput()
    output.add("start-up")
    output.mark_ready()
    for number in range(5):
        output.add(f"served {number}")
    assert output.failure_lines() == ["served 2", "served 3", "served 4"]


def test_the_engine_gets_no_portal_secrets_and_keeps_what_a_model_server_needs():
    inherited = {
        "DATABASE_URL": "postgres://portal:secret@db/portal",
        "REDIS_URL": "redis://:secret@cache:6379/0",
        "PORTAL_SECRET_KEY": "not for vLLM",
        "PORTAL_EMAIL_PASSWORD": "not for vLLM",
        "PYTHONPATH": "/work/main",
        "PATH": "/usr/bin",
        "HOME": "/home/portal",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_TOKEN": "hf_for_gated_models",
        "HF_HOME": "/srv/hf",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "VLLM_CPU_OMP_THREADS_BIND": "auto",
        "OMP_NUM_THREADS": "2",
        "VLLM_API_KEY": "a stale key",
    }
    environment = engine_environment(inherited, {"VLLM_API_KEY": "this launch's key", "PYTHONUNBUFFERED": "1"})
    assert environment == {
        "PATH": "/usr/bin",
        "HOME": "/home/portal",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_TOKEN": "hf_for_gated_models",
        "HF_HOME": "/srv/hf",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "VLLM_CPU_OMP_THREADS_BIND": "auto",
        "OMP_NUM_THREADS": "2",
        "VLLM_API_KEY": "this launch's key",
        "PYTHONUNBUFFERED": "1",
    }
