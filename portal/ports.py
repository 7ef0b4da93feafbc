"""Whether a TCP port is free: asked by ``runportal`` before it starts and by ``doctor``."""

from __future__ import annotations

import socket


def port_is_free(host: str, port: int) -> bool:
    """Return True when nothing listens on ``host:port`` yet (binding it would succeed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
