"""``manage.py startplugin NAME``: a new plugin package that installs and shows a page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.plugins.skeleton_writer import SkeletonError, write_plugin


class Command(BaseCommand):
    help = "Make a new plugin package (pyproject with the entry point, app config, a page, a test)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the plugin's name, e.g. team-notes (also its URL slug)")
        parser.add_argument(
            "--directory", default=str(Path(settings.BASE_DIR) / "plugins"), help="where to make it (default: plugins/)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            target = write_plugin(options["name"], Path(options["directory"]))
        except SkeletonError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Made the plugin in {target}.")
        self.stdout.write(
            f"Install it with `pip install -e {target}`, restart the portal, and open /plugins/{target.name}/."
        )
