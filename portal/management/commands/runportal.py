"""Start the whole portal on one machine: the web server and the engine supervisor."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.ports import port_is_free

ASGI_APP = "portal.asgi:application"


class Command(BaseCommand):
    help = "Run Daphne and the engine supervisor together and print the URL."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-engine", action="store_true", help="do not start the engine supervisor")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = settings.PORTAL_HOST, settings.PORTAL_PORT
        if not port_is_free(host, port):
            raise CommandError(
                f"Port {port} on {host} is already in use. Stop what uses it, or set PORTAL_PORT "
                "to a free port (python manage.py doctor says more)."
            )
        python = sys.executable
        proxy_headers = ["--proxy-headers"] if settings.PORTAL_BEHIND_PROXY else []
        commands: dict[str, list[str]] = {
            # Daphne with the WebSocket limits from the settings (session-bound timeout, pings, size cap).
            "web": [python, "-m", "portal.daphne_server", "-b", host, "-p", str(port), *proxy_headers, ASGI_APP],
        }
        if not options["no_engine"]:
            commands["engine"] = [python, str(settings.BASE_DIR / "manage.py"), "runengine"]
        # From the project directory, so Daphne finds portal.asgi wherever runportal was started.
        children = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR)  # noqa: S603 - our own argv
            for name, cmd in commands.items()
        }

        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - comparison only
            shown = socket.gethostname()
        self.stdout.write(
            self.style.SUCCESS(f"\n  LLM Portal is starting at http://{shown}:{port}/\n  Press Ctrl+C to stop.\n")
        )
        self.stdout.flush()
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    self.stderr.write(f"The {name} process exited with code {code}; stopping the portal.")
                    exit_code = code or 1
                    stopping = True
                    break
            time.sleep(0.5)
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 30
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if exit_code:
            raise CommandError(f"stopped after a child process failed (exit {exit_code})")
