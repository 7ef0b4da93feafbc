"""`manage.py doctor` against broken setups: each names the problem, with its fix, and exits non-zero.

Through the command (``--json``), so the exit status and the output are what an operator
sees. GPU figures come from a stub of NVML where the point is the portal's arithmetic (this
machine has no GPU); disk space from a stub where the point is the comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from inference import telemetry
from inference.models import EngineConfig, EngineState
from tests.test_doctor import free_port

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "https://portal.invalid"  # .invalid never resolves: the WebSocket probe fails at once
GIB = 1024**3


def doctor(capsys: Any) -> tuple[bool, dict[str, dict[str, str]]]:
    """Run `doctor --json`; return (whether it exited non-zero, findings by check)."""
    failed = False
    try:
        call_command("doctor", "--json")
    except CommandError:
        failed = True
    findings = json.loads(capsys.readouterr().out)
    return failed, {finding["check"]: finding for finding in findings}


def assert_named(capsys: Any, check: str, *words: str, status: str = "fail") -> dict[str, str]:
    failed, findings = doctor(capsys)
    finding = findings[check]
    assert finding["status"] == status, finding
    for word in words:
        assert word in finding["detail"] + " " + finding["fix"], finding
    if status == "fail":
        assert failed, "doctor exited 0 although a check failed"
    return finding


@pytest.fixture
def clean(settings: Any, tmp_path: Path, monkeypatch: Any) -> Any:
    """A healthy single-machine setup: free port, loopback, private data folder, no public URL."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    settings.DATA_DIR = data_dir
    settings.ENGINE_LOG_DIR = data_dir / "logs"
    settings.PORTAL_PORT = free_port()
    settings.PORTAL_HOST = "127.0.0.1"
    settings.PORTAL_PUBLIC_URL = None
    settings.PORTAL_BEHIND_PROXY = False
    settings.PORTAL_WEB_PROCESSES = 1
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    return settings


def test_a_healthy_setup_passes(db: Any, clean: Any, capsys: Any) -> None:
    failed, findings = doctor(capsys)
    assert not failed, [f for f in findings.values() if f["status"] == "fail"]
    assert findings["data folder"]["status"] == "ok"
    assert findings["public URL binding"]["status"] == "ok"


def test_a_fresh_data_folder_is_made_private_and_passes_from_the_shell(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    env |= {"PORTAL_DATA_DIR": str(tmp_path / "fresh"), "PORTAL_PORT": str(free_port())}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    result = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "fresh").stat().st_mode & 0o077 == 0


def test_a_database_that_is_down_is_named_and_fails(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    env |= {"PORTAL_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://postgres@127.0.0.1:9/portal"}
    result = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    findings = {finding["check"]: finding for finding in json.loads(result.stdout)}
    assert findings["database"]["status"] == "fail"
    assert "does not answer" in findings["database"]["detail"]
    assert "DATABASE_URL" in findings["database"]["fix"]


def test_a_wrong_host_in_the_public_url_is_named(db: Any, clean: Any, capsys: Any) -> None:
    clean.PORTAL_PUBLIC_URL = PUBLIC
    clean.PORTAL_BEHIND_PROXY = True
    clean.ALLOWED_HOSTS = ["other.example.com"]
    assert_named(capsys, "public URL hosts", "portal.invalid", "PORTAL_ALLOWED_HOSTS")


def test_a_public_url_missing_from_the_csrf_origins_behind_a_proxy_is_named(db: Any, clean: Any, capsys: Any) -> None:
    clean.PORTAL_PUBLIC_URL = PUBLIC
    clean.PORTAL_BEHIND_PROXY = True
    clean.ALLOWED_HOSTS = ["portal.invalid"]
    clean.CSRF_TRUSTED_ORIGINS = ["https://old.example.com"]
    assert_named(capsys, "public URL hosts", "PORTAL_CSRF_TRUSTED_ORIGINS=https://portal.invalid")


def test_loopback_binding_with_a_remote_public_url_and_no_proxy_fails(db: Any, clean: Any, capsys: Any) -> None:
    clean.PORTAL_PUBLIC_URL = PUBLIC
    clean.ALLOWED_HOSTS = ["portal.invalid"]
    assert_named(capsys, "public URL binding", "this machine only", "PORTAL_BEHIND_PROXY=true")


def test_a_wildcard_bind_behind_a_proxy_fails(db: Any, clean: Any, capsys: Any) -> None:
    clean.PORTAL_PUBLIC_URL = PUBLIC
    clean.PORTAL_BEHIND_PROXY = True
    clean.PORTAL_HOST = "0.0.0.0"  # noqa: S104 - the misconfiguration under test
    assert_named(capsys, "public URL binding", "bypass the proxy", "PORTAL_HOST=127.0.0.1")


def test_a_wildcard_bind_with_a_local_public_url_is_pointed_out(db: Any, clean: Any, capsys: Any) -> None:
    clean.PORTAL_PUBLIC_URL = f"http://localhost:{clean.PORTAL_PORT}"
    clean.PORTAL_HOST = "0.0.0.0"  # noqa: S104 - the misconfiguration under test
    assert_named(capsys, "public URL binding", "open to the network", status="warn")


def test_plain_http_in_production_fails(db: Any, clean: Any, capsys: Any) -> None:
    clean.PRODUCTION = True
    clean.PORTAL_PUBLIC_URL = "http://portal.invalid"
    clean.PORTAL_BEHIND_PROXY = True
    clean.STATIC_ROOT = clean.DATA_DIR
    assert_named(capsys, "public URL binding", "HTTPS-only")


def test_a_data_folder_open_to_others_fails(db: Any, clean: Any, capsys: Any) -> None:
    clean.DATA_DIR.chmod(0o755)
    assert_named(capsys, "data folder", "open to every user", "chmod 700")


def test_a_secret_key_readable_by_others_is_named(db: Any, clean: Any, capsys: Any) -> None:
    secret = clean.DATA_DIR / "secret_key"
    secret.write_text("x" * 60)
    secret.chmod(0o644)
    assert_named(capsys, "data folder", f"{secret} (mode 644)", f"chmod 600 {secret}", status="warn")


def test_a_database_and_an_engine_log_readable_by_others_are_named(db: Any, clean: Any, capsys: Any) -> None:
    # What a portal created under the usual umask 022 before files were made private.
    database, journal = clean.DATA_DIR / "portal.sqlite3", clean.DATA_DIR / "portal.sqlite3-wal"
    log = clean.DATA_DIR / "logs" / "demo.log"
    log.parent.mkdir(mode=0o700)
    for path in (database, journal, log):
        path.write_bytes(b"")
        path.chmod(0o644)
    finding = assert_named(capsys, "data folder", f"chmod 600 {log} {database} {journal}", status="warn")
    assert "conversations" in finding["detail"]
    for path in (database, journal, log):
        path.chmod(0o600)
    assert doctor(capsys)[1]["data folder"]["status"] == "ok"


def test_several_web_processes_without_redis_fail(db: Any, clean: Any, capsys: Any) -> None:
    clean.PORTAL_WEB_PROCESSES = 3
    clean.REDIS_URL = None
    assert_named(capsys, "redis for processes", "3 web processes", "REDIS_URL")
    assert_named(capsys, "metrics", "PROMETHEUS_MULTIPROC_DIR", status="warn")


def test_a_missing_metrics_directory_fails(db: Any, clean: Any, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(clean.DATA_DIR / "nowhere"))
    assert_named(capsys, "metrics", "not a writable directory", "install -d")


def test_static_files_not_collected_in_production_fail(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    clean.PRODUCTION = True
    clean.STATIC_ROOT = tmp_path / "static"
    assert_named(capsys, "static files", "staticfiles.json", "collectstatic")


# --- Engines ------------------------------------------------------------------------------


def engine(name: str = "big", **fields: Any) -> EngineConfig:
    fields.setdefault("model", "openai/gpt-oss-20b")
    fields.setdefault("served_model_name", name)
    return EngineConfig.objects.create(name=name, **fields)


def test_an_incomplete_model_folder_is_named(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    engine("half", model=str(folder))
    assert_named(capsys, "model half", "incomplete", "model-00002-of-00002.safetensors")


def test_a_model_folder_without_weights_is_named(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    engine("empty", model=str(tmp_path))
    assert_named(capsys, "model empty", "no weight files", "no tokenizer")


def test_a_hub_model_that_cannot_be_downloaded_offline_is_named(
    db: Any, clean: Any, capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine()
    assert_named(capsys, "model big", "HF_HUB_OFFLINE", "hf download")


class StubDiskUsage:
    """Stub of shutil.disk_usage: a nearly full disk."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, path: Any) -> Any:
        from shutil import _ntuple_diskusage

        return _ntuple_diskusage(100 * GIB, 100 * GIB - self.free, self.free)


def test_too_little_disk_for_a_download_is_named(
    db: Any, clean: Any, capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("inference.doctor_checks_ops.shutil.disk_usage", StubDiskUsage(2 * GIB))
    engine()
    finding = assert_named(capsys, "model big", "needs about", "Free disk space")
    assert "2.0 GiB are free" in finding["detail"]


def stub_gpus(monkeypatch: Any, *gpus: tuple[int, int]) -> None:
    """Stub of NVML's reading: GPUs as (total GiB, used GiB)."""
    readings = [
        telemetry.GpuReading(i, "Stub GPU", used * GIB, total * GIB, 0, 40, 50.0, 300.0)
        for i, (total, used) in enumerate(gpus)
    ]
    monkeypatch.setattr(telemetry, "read_gpus", lambda: readings)


def test_a_gpu_engine_without_a_visible_gpu_fails(db: Any, clean: Any, capsys: Any, monkeypatch: Any) -> None:
    stub_gpus(monkeypatch)
    engine(device=EngineConfig.Device.CUDA)
    assert_named(capsys, "gpu big", "No NVIDIA GPU is visible", "nvidia-smi")


def test_too_few_gpus_for_tensor_parallelism_fail(db: Any, clean: Any, capsys: Any, monkeypatch: Any) -> None:
    stub_gpus(monkeypatch, (80, 0))
    engine(device=EngineConfig.Device.CUDA, tensor_parallel_size=2)
    assert_named(capsys, "gpu big", "needs 2 GPUs", "tensor parallel size to 1")


def test_a_gpu_too_small_for_the_plan_fails(db: Any, clean: Any, capsys: Any, monkeypatch: Any) -> None:
    stub_gpus(monkeypatch, (8, 0))
    engine(device=EngineConfig.Device.CUDA)
    finding = assert_named(capsys, "gpu big")
    assert finding["fix"]


def test_a_gpu_busy_with_something_else_fails(db: Any, clean: Any, capsys: Any, monkeypatch: Any) -> None:
    stub_gpus(monkeypatch, (80, 30))
    engine(device=EngineConfig.Device.CUDA, max_model_len=8192)
    assert_named(capsys, "gpu big", "50.0 GiB free", "GPU memory utilization to 0.60")


def test_a_gpu_that_fits_passes(db: Any, clean: Any, capsys: Any, monkeypatch: Any) -> None:
    stub_gpus(monkeypatch, (80, 0))
    engine(device=EngineConfig.Device.CUDA, max_model_len=8192)
    _, findings = doctor(capsys)
    assert findings["gpu big"]["status"] == "ok"


def test_a_chat_unfriendly_stream_interval_is_named(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    engine("jumpy", model=str(tmp_path), extra_flags="--stream-interval 32")
    assert_named(capsys, "streaming jumpy", "32 tokens at a time", "at most 5", status="warn")


def test_an_engine_socket_directory_others_can_open_fails(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    engine("open", model=str(tmp_path))
    with tempfile.TemporaryDirectory(prefix="pe-") as short:  # pytest's tmp_path is too long for a socket
        loose = Path(short) / "run"
        loose.mkdir()
        loose.chmod(0o755)
        clean.ENGINE_SOCKET_DIR = loose
        assert_named(capsys, "engine socket directory", "mode 0700", f"chmod 700 {loose}")
        loose.chmod(0o700)
        assert_named(capsys, "engine socket directory", str(loose), status="ok")


def test_an_engine_socket_directory_too_long_for_a_socket_is_named(
    db: Any, clean: Any, capsys: Any, tmp_path: Path
) -> None:
    engine("far", model=str(tmp_path))
    clean.ENGINE_SOCKET_DIR = tmp_path / ("x" * 60)
    assert_named(capsys, "engine socket directory", "too long", "PrivateTmp", status="warn")


def test_a_ray_engine_whose_private_ray_head_was_unset_fails(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    clean.ENGINE_RAY_ADDRESS = "10.0.0.5:6380"
    engine("multi", model=str(tmp_path), extra_flags="--distributed-executor-backend ray")
    assert_named(capsys, "executor multi", "10.0.0.5:6380", status="ok")
    clean.ENGINE_RAY_ADDRESS = ""
    assert_named(capsys, "executor multi", "without authentication", "PORTAL_ENGINE_RAY_ADDRESS")


@pytest.fixture
def fake_engine_venv(clean: Any, tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "bin" / "vllm").write_text("")
    clean.ENGINE_VENV = venv
    return venv / "lib" / "python3.11" / "site-packages"


def test_an_unexpected_vllm_version_is_named(db: Any, capsys: Any, fake_engine_venv: Path) -> None:
    (fake_engine_venv / "vllm-0.1.0.dist-info").mkdir(parents=True)
    assert_named(capsys, "vllm version", "vLLM 0.1.0", "second engine", status="warn")


def test_an_engine_venv_without_vllm_fails(db: Any, capsys: Any, fake_engine_venv: Path) -> None:
    assert_named(capsys, "vllm version", "No vLLM", "make engine")


def test_a_crashed_engine_shows_its_diagnosis_and_remedies(db: Any, clean: Any, capsys: Any, tmp_path: Path) -> None:
    from django.utils import timezone

    config = engine("broken", model=str(tmp_path), desired_state=EngineConfig.Desired.RUNNING)
    EngineState.objects.create(
        engine=config,
        state=EngineState.State.CRASH_LOOP,
        diagnosis="Out of GPU memory while loading the weights.",
        remedies=["Lower max model length."],
        heartbeat_at=timezone.now(),
    )
    assert_named(capsys, "engine broken", "Out of GPU memory", "Lower max model length.")


def test_redis_that_is_down_is_named_and_fails(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_URL", "REDIS_URL"))}
    env |= {"PORTAL_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:9/0"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    result = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    findings = {finding["check"]: finding for finding in json.loads(result.stdout)}
    assert findings["cache"]["status"] == "fail"
    assert "REDIS_URL" in findings["cache"]["fix"]


def test_daphnes_running_from_this_checkout_count_as_web_processes(
    db: Any, clean: Any, capsys: Any, tmp_path: Path
) -> None:
    from portal.doctor_checks import web_processes

    assert web_processes() == 1
    daphnes = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()), "portal.asgi:application"],
            cwd=ROOT,
            env={**os.environ, "PORTAL_DATA_DIR": str(data_dir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Two of this portal's, and one of another portal from the same checkout (a test's).
        for data_dir in (clean.DATA_DIR, clean.DATA_DIR, tmp_path / "another-portal")
    ]
    try:
        assert web_processes() == 2
        clean.REDIS_URL = None
        assert_named(capsys, "redis for processes", "2 web processes")
    finally:
        for daphne in daphnes:
            daphne.terminate()
            daphne.wait(timeout=20)
