"""The tiny gpt-oss builder: cached by its source's digest, deterministic, Harmony's ids; its plan and command.

These run the builder in the engine's environment (no vLLM is started): the checkpoint is
built once into the shared models dir, like the engine fixture's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from inference.models import EngineConfig
from inference.planner import GIB, Capacity, PlanSettings, load_shape, plan
from inference.tiny_gptoss import BUILDER, TINY_GPTOSS_SERVED_NAME, builder_digest, prepare_tiny_gptoss
from tests.stack import ENGINE_PYTHON, MODELS_DIR

HARMONY_IDS = """
import json, sys
from openai_harmony import HarmonyEncodingName, load_harmony_encoding
from transformers import AutoTokenizer
encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
text = sys.argv[2]
print(json.dumps([tokenizer.encode(text), encoding.encode(text, allowed_special="all")]))
"""
SAMPLE = "<|start|>user<|message|>Héllo, wörld! 12345 naïve café… 東京<|end|><|start|>assistant"
CPU = PlanSettings(device="cpu", dtype="bfloat16", max_model_len=2048, max_num_seqs=8, cpu_kv_cache_gib=1)


@pytest.fixture(scope="module")
def tiny_folder() -> Path:
    if not ENGINE_PYTHON.exists():
        if os.environ.get("PORTAL_REQUIRE_ENGINE") == "1":
            pytest.fail("the engine environment is missing: `make engine`")
        pytest.skip("the engine environment is missing: `make engine`")
    folder, _ = prepare_tiny_gptoss(MODELS_DIR)
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_the_checkpoint_is_cached_under_the_builders_digest_and_reused(tiny_folder: Path) -> None:
    assert tiny_folder.name == f"tiny-gpt-oss-{builder_digest()}"
    assert builder_digest() == hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:12]
    again, built = prepare_tiny_gptoss(MODELS_DIR)
    assert (again, built) == (tiny_folder, False)
    sizes = {path.name: path.stat().st_size for path in tiny_folder.iterdir()}
    assert 45e6 < sizes["model.safetensors"] < 60e6
    assert json.loads((tiny_folder / "config.json").read_text())["model_type"] == "gpt_oss"


def test_the_builder_is_deterministic(tiny_folder: Path, tmp_path: Path) -> None:
    subprocess.run([str(ENGINE_PYTHON), str(BUILDER), str(tmp_path / "again")], check=True, capture_output=True)
    assert digests(tmp_path / "again") == digests(tiny_folder)
    assert not list(tmp_path.glob("*.partial-*"))


def test_the_tokenizer_gives_harmonys_ids(tiny_folder: Path) -> None:
    result = subprocess.run(
        [str(ENGINE_PYTHON), "-c", HARMONY_IDS, str(tiny_folder), SAMPLE], check=True, capture_output=True, text=True
    )
    ours, harmony = json.loads(result.stdout.strip().splitlines()[-1])
    assert ours == harmony
    assert 200006 in ours  # <|start|> is one special token, as in Harmony


def test_the_planner_plans_the_tiny_checkpoint_and_gpt_oss_20b(tiny_folder: Path) -> None:
    tiny = plan(load_shape(str(tiny_folder)), CPU, Capacity(ram_bytes=24 * GIB))
    assert tiny.fits is True
    # The planner's weight count matches the file (its header is the only difference).
    assert abs(tiny.weights_bytes - (tiny_folder / "model.safetensors").stat().st_size) < 100_000
    # One full-attention layer of one 64-wide KV head in bf16; the sliding layer is capped at 12 tokens.
    assert tiny.kv_bytes_per_token == 2 * 64 * 2
    published = plan(load_shape("openai/gpt-oss-20b"), PlanSettings(max_model_len=131072), Capacity([24 * GIB]))
    assert published.fits is True
    assert 12 * GIB < published.weights_bytes < 14 * GIB


@pytest.mark.django_db
def test_the_command_creates_a_reasoning_engine_once(tiny_folder: Path) -> None:
    call_command("preparetinygptoss", "--models-dir", str(MODELS_DIR), "--name", "oss")
    call_command("preparetinygptoss", "--models-dir", str(MODELS_DIR), "--name", "oss")
    config = EngineConfig.objects.get()
    assert (config.name, config.served_model_name, config.reasoning_parser) == (
        "oss",
        TINY_GPTOSS_SERVED_NAME,
        "openai_gptoss",
    )
    assert config.model == str(tiny_folder)
    assert "--enforce-eager" in config.extra_flags


@pytest.mark.django_db
def test_the_command_refuses_a_models_dir_that_is_a_file(tmp_path: Path) -> None:
    occupied = tmp_path / "models"
    occupied.write_text("not a folder")
    with pytest.raises(CommandError, match="cannot be used"):
        call_command("preparetinygptoss", "--models-dir", str(occupied), "--no-engine")
    assert not EngineConfig.objects.exists()


@pytest.mark.django_db
def test_the_command_without_the_engine_environment_says_how_to_install_it(settings, tmp_path: Path) -> None:
    settings.ENGINE_VENV = tmp_path / "no-engine"
    with pytest.raises(CommandError, match="make engine"):
        call_command("preparetinygptoss", "--models-dir", str(tmp_path))
    assert not EngineConfig.objects.exists()
    assert not list(tmp_path.glob("tiny-gpt-oss-*"))


@pytest.mark.django_db
def test_a_builder_that_fails_says_why_and_leaves_no_folder(settings, tmp_path: Path) -> None:
    # The portal's own environment has no torch, transformers or Harmony: the builder cannot run there.
    settings.ENGINE_VENV = Path(sys.prefix)
    with pytest.raises(CommandError, match=r"failed \(1\)[\s\S]*No module named"):
        call_command("preparetinygptoss", "--models-dir", str(tmp_path))
    assert not [path for path in tmp_path.iterdir() if path.name.startswith("tiny-gpt-oss-")]
    assert not EngineConfig.objects.exists()


@pytest.mark.django_db
def test_running_the_command_again_points_out_an_engine_on_an_older_build(tiny_folder: Path, capsys) -> None:
    EngineConfig.objects.create(name="oss", served_model_name="oss", model="/srv/models/tiny-gpt-oss-0")
    call_command("preparetinygptoss", "--models-dir", str(MODELS_DIR), "--name", "oss")
    assert f"point it at {tiny_folder}" in capsys.readouterr().out
    assert EngineConfig.objects.get().model == "/srv/models/tiny-gpt-oss-0"
