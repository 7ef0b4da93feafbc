from typing import Any

from django.core.management.base import BaseCommand

from portal.plugins import plugin_settings


class Command(BaseCommand):
    help = "Say the dummy plugin's greeting."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{plugin_settings('dummy')['greeting']} from the dummy plugin")
