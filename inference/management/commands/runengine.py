"""Run the engine supervisor: keep each engine's vLLM process in its desired state."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inference.models import EngineConfig
from inference.supervisor import Supervisor


class Command(BaseCommand):
    help = "Supervise the vLLM engines of this host (start, watch, restart, stop) until SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--engine", metavar="NAME", help="supervise only this engine")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["engine"]
        if name and not EngineConfig.objects.filter(name=name).exists():
            raise CommandError(f"No engine named {name!r}; `python manage.py engine status` lists them.")
        # httpx logs every /health and /metrics poll at INFO; that is noise here.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        Supervisor(only=name).run()
