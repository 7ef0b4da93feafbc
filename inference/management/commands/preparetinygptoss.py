"""Build the tiny gpt-oss model (reasoning, then an answer; no GPU, no download) and an engine for it."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.demo import DemoUnavailable, add_cpu_engine_arguments, cpu_engine_options
from inference.models import EngineConfig
from inference.tiny_gptoss import TINY_GPTOSS_NAME, create_tiny_gptoss_engine, prepare_tiny_gptoss


class Command(BaseCommand):
    help = (
        "Build the tiny gpt-oss checkpoint (a fixed Harmony answer with reasoning) once and create a CPU engine "
        "for it with the openai_gptoss reasoning parser, to try the gpt-oss path without a GPU."
    )

    def add_arguments(self, parser: Any) -> None:
        add_cpu_engine_arguments(parser, default_name=TINY_GPTOSS_NAME, model_files="build the model files")

    def handle(self, *args: Any, **options: Any) -> None:
        models_dir = (options["models_dir"] or settings.ENGINE_MODELS_DIR).resolve()
        started = time.monotonic()
        try:
            path, built = prepare_tiny_gptoss(models_dir)
        except DemoUnavailable as exc:
            raise CommandError(str(exc)) from None
        if built:
            self.stdout.write(f"Built the tiny gpt-oss model in {path} ({time.monotonic() - started:.1f} s).")
        elif options["verbosity"] > 1:
            self.stdout.write(f"The tiny gpt-oss model is ready in {path}.")
        if options["no_engine"]:
            return
        existing = EngineConfig.objects.filter(name=options["name"]).first()
        if existing is not None:
            # Running it again is harmless (like preparedemo); a stale folder is worth a word.
            if existing.model != str(path):
                self.stdout.write(
                    f"The engine {existing.name!r} exists already and serves {existing.model}; "
                    f"point it at {path} to use this build."
                )
            return
        config = create_tiny_gptoss_engine(path, **cpu_engine_options(options))
        self.stdout.write(f"Created the engine {config.name!r} serving {config.served_model_name} on a private socket.")
