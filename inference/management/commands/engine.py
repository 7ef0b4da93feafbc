"""Show engine states and change what is desired: `engine status`, `engine start NAME`, ..."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inference.desired_state import EngineRefused, restart_engine, start_engine, stop_engine
from inference.models import EngineConfig
from inference.status import admin_snapshot


class Command(BaseCommand):
    help = "Print each engine's state, or start/stop/restart one (the supervisor carries it out)."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        status = actions.add_parser("status", help="print each engine's state")
        status.add_argument("--json", action="store_true", help="print JSON")
        for action in ("start", "stop", "restart"):
            sub = actions.add_parser(action, help=f"{action} an engine")
            sub.add_argument("name")
            if action != "stop":
                sub.add_argument(
                    "--ignore-memory-plan", action="store_true", help="start even if the planner says it does not fit"
                )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "status":
            self._status(as_json=options["json"])
            return
        try:
            config = EngineConfig.objects.select_related("state").get(name=options["name"])
        except EngineConfig.DoesNotExist:
            raise CommandError(f"No engine named {options['name']!r}.") from None
        try:
            if action == "start":
                start_engine(config, override=options["ignore_memory_plan"])
            elif action == "restart":
                restart_engine(config, override=options["ignore_memory_plan"])
            else:
                stop_engine(config)
        except EngineRefused as exc:
            raise CommandError(exc.message + " (--ignore-memory-plan starts it anyway)") from None
        self.stdout.write(f"{config.name}: desired state is now {config.desired_state}; the supervisor acts on it.")

    def _status(self, *, as_json: bool) -> None:
        rows = admin_snapshot()
        if as_json:
            for row in rows:
                row.pop("log_tail", None)
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No engine is configured. `make run` creates the demo engine.")
            return
        for row in rows:
            self.stdout.write(
                f"{row['name']:<16} {row['state']:<11} {row['message']:<44} model={row['model']} "
                f"desired={row['desired']} port={row['port']} pid={row['pid'] or '-'}"
            )
            if row["failure"]:
                failure = row["failure"]
                self.stdout.write(f"{'':<16} last failure ({failure['kind']}): {failure['diagnosis']}")
                for remedy in failure["remedies"]:
                    self.stdout.write(f"{'':<16}   - {remedy}")
