"""Show engine states and change what is desired: `engine status`, `engine start NAME`, ...

Also registers and removes external engines: `engine add-external NAME --url URL ...`, `engine remove NAME`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from inference.desired_state import EngineRefused, restart_engine, start_engine, stop_engine
from inference.external_engines import ExternalEngineRefused, ExternalSpec, register_external, remove_engine
from inference.external_probe import probe
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
        add = actions.add_parser("add-external", help="register an engine the portal routes to but does not run")
        add.add_argument("name")
        add.add_argument("--url", required=True, help="base URL, e.g. https://vllm.internal:8000")
        add.add_argument("--api-key-file", default="", help="file holding the engine's API key (stored encrypted)")
        add.add_argument(
            "--keep-key-in-file", action="store_true", help="store the file's path, not the key: read at every use"
        )
        add.add_argument("--ca-bundle", default="", help="PEM file of the CAs that sign the engine's certificate")
        add.add_argument(
            "--model", action="append", default=[], help="pin a served model (repeatable); default: its /v1/models"
        )
        add.add_argument("--replace", action="store_true", help="update the engine of that name if it exists")
        remove = actions.add_parser("remove", help="remove an engine (external, or a stopped managed one)")
        remove.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "status":
            self._status(as_json=options["json"])
            return
        if action in ("add-external", "remove"):
            self._external(action, options)
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

    def _external(self, action: str, options: dict[str, Any]) -> None:
        try:
            if action == "remove":
                remove_engine(options["name"])
                self.stdout.write(f"{options['name']}: removed.")
                return
            spec = ExternalSpec(
                name=options["name"], url=options["url"], api_key_file=options["api_key_file"],
                keep_key_in_file=options["keep_key_in_file"], ca_bundle=options["ca_bundle"],
                models=tuple(options["model"]),
            )  # fmt: skip
            config = register_external(spec, replace=options["replace"])
        except ExternalEngineRefused as exc:
            raise CommandError(exc.message) from None
        # One probe now, so the operator sees at once whether the address and key work.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        result = probe(config)
        self.stdout.write(f"{config.name}: registered at {config.url}. Probed now: {result.message}")
        if result.remedy:
            self.stdout.write(f"  {result.remedy}")
        self.stdout.write("The supervisor (`manage.py runengine`) probes it from now on; requests go to it when ready.")

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
                + (f"external url={row['url']}" if row["kind"] == "external" else
                   f"desired={row['desired']} pid={row['pid'] or '-'}")
            )  # fmt: skip
            if row["detail"]:
                self.stdout.write(f"{'':<16} {row['detail']}")
            if row["failure"] and row["failure"]["diagnosis"] != row["detail"]:
                failure = row["failure"]
                self.stdout.write(f"{'':<16} last failure ({failure['kind']}): {failure['diagnosis']}")
                for remedy in failure["remedies"]:
                    self.stdout.write(f"{'':<16}   - {remedy}")
