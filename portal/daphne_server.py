"""Run Daphne with the portal's WebSocket limits: ``python -m portal.daphne_server [daphne options]``.

Used by ``manage.py runportal`` and the systemd units instead of ``python -m daphne``, so the
limits come from the settings (``PORTAL_WS_*``, docs/websocket.md) wherever Daphne runs.
Options given on the command line come after the settings' and win.

One change to Daphne's behaviour: a protocol failure (above all a message over the size
cap) closes the socket with its close code (1009 for "too big") instead of dropping the TCP
connection, so the browser learns why.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server


def limit_arguments() -> list[str]:
    """Return Daphne's options for the session-bound timeout, keep-alive pings and message size."""
    from django.conf import settings

    return [
        "--websocket_timeout",
        str(settings.WS_TIMEOUT),
        "--ping-interval",
        str(settings.WS_PING_INTERVAL),
        "--ping-timeout",
        str(settings.WS_PING_TIMEOUT),
        "--websocket-max-message-size",
        str(settings.WS_MAX_MESSAGE_BYTES),
        # One frame may carry a whole message; the message cap is the one that counts.
        "--websocket-max-frame-size",
        str(settings.WS_MAX_MESSAGE_BYTES),
    ]


class PortalServer(Server):
    """Daphne's server, with close frames instead of dropped connections on protocol failures."""

    def run(self) -> None:
        # Daphne makes its WebSocket factory in run() and then starts the reactor: by the
        # time the reactor runs, the factory exists and no socket has been accepted yet.
        # Imported here: daphne.server installs the asyncio reactor, which must come first.
        from twisted.internet import reactor

        reactor.callWhenRunning(self._fail_with_close_frames)
        super().run()

    def _fail_with_close_frames(self) -> None:
        self.ws_factory.setProtocolOptions(failByDrop=False)


class PortalCommandLine(CommandLineInterface):
    server_class = PortalServer


def main(argv: list[str]) -> Any:
    """Start Daphne with the portal's limits followed by ``argv``."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    return PortalCommandLine().run([*limit_arguments(), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
