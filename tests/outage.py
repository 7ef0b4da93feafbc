"""Outages of the database and of Redis for the fault tests, cut and restored from the test.

On PostgreSQL and Redis (CI's second pass sets DATABASE_URL and REDIS_URL) the outage is
real: :class:`TcpProxy`, a throwaway TCP proxy on loopback, sits between the portal and the
shared server, and cutting it drops every connection through it and refuses new ones, as a
server going away does. The shared server itself is never stopped. SQLite has no server to
cut: there every new cursor fails with SQLite's own error for a database it cannot open
(a failing wrapper around the connection), which reaches the portal's code the same way.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client


@dataclass
class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target``; :meth:`cut` drops and refuses, :meth:`restore` forwards again."""

    target: tuple[str, int]
    cut_off: bool = False
    _pairs: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, name="outage-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.cut_off:
                client.close()  # the server is "down": the connection ends at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection through the proxy and refuse new ones until :meth:`restore`."""
        self.cut_off = True
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


class DatabaseOutage:
    """The test database, with an outage the test starts (:meth:`cut`) and ends (:meth:`restore`)."""

    def __init__(self) -> None:
        self.proxy: TcpProxy | None = None
        self._real: Callable[..., Any] | None = None
        self._direct: tuple[Any, Any] | None = None
        database = connections["default"]
        self.vendor = database.vendor
        if self.vendor == "postgresql":
            settings_dict = database.settings_dict
            host = settings_dict.get("HOST") or ""
            if not host or host.startswith("/"):
                pytest.fail("the PostgreSQL outage test needs a TCP DATABASE_URL (host:port), not a socket")
            self.proxy = TcpProxy((host, int(settings_dict.get("PORT") or 5432)))
            # Every thread's connection object shares this dict: new connections go through the proxy.
            self._direct = (settings_dict["HOST"], settings_dict.get("PORT"))
            settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(self.proxy.port)
            database.close()

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
            return
        if self._real is not None:
            return
        real = self._real = getattr(BaseDatabaseWrapper, "_cursor")  # noqa: B009 - private, not in the stubs

        def unreachable(wrapper: BaseDatabaseWrapper, name: str | None = None) -> Any:
            if wrapper.alias == "default":
                raise OperationalError("disk I/O error (the test's database outage)")
            return real(wrapper, name)

        # Every statement fails, as on a server that went away; closing and asking for the
        # autocommit state (Channels does before each message) still work, as they do there.
        setattr(BaseDatabaseWrapper, "_cursor", unreachable)  # noqa: B010

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
            # A web process drops a broken connection when the next request starts
            # (close_old_connections); Django's test client turns that off, so do it here.
            connections["default"].close_if_unusable_or_obsolete()
            return
        if self._real is not None:
            setattr(BaseDatabaseWrapper, "_cursor", self._real)  # noqa: B010
            self._real = None

    def close(self) -> None:
        """End the outage and connect directly again (pytest-django flushes the tables next)."""
        self.restore()
        database = connections["default"]
        database.close()
        if self._direct is not None:
            database.settings_dict["HOST"], database.settings_dict["PORT"] = self._direct
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture(name="database_outage")
def database_outage_fixture(transactional_db: Any) -> Iterator[DatabaseOutage]:
    outage = DatabaseOutage()
    try:
        yield outage
    finally:
        outage.close()


def redis_url_through(proxy: TcpProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's (database number and options kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{proxy.port}"))


@dataclass
class RedisOutage:
    """The cache and the channel layer, through a proxy the test cuts (REDIS_URL only)."""

    proxy: TcpProxy

    def cut(self) -> None:
        self.proxy.cut()

    def restore(self) -> None:
        self.proxy.restore()


@pytest.fixture(name="redis_outage")
def redis_outage_fixture(settings: Any) -> Iterator[RedisOutage]:
    """Point the cache and the channel layer at a proxy in front of the shared Redis."""
    if not settings.REDIS_URL:
        pytest.skip("a Redis outage needs REDIS_URL (CI's PostgreSQL and Redis pass sets it)")
    server = urlsplit(settings.REDIS_URL)
    proxy = TcpProxy((server.hostname or "127.0.0.1", server.port or 6379))
    caches = {"default": {**settings.CACHES["default"], "LOCATION": redis_url_through(proxy, settings.CACHE_URL)}}
    layer = settings.CHANNEL_LAYERS["default"]
    config = {**layer["CONFIG"], "hosts": [redis_url_through(proxy, settings.REDIS_URL)]}
    # Through the settings fixture: Django and Channels drop their clients when these change.
    settings.CACHES = caches
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": config}}
    try:
        yield RedisOutage(proxy)
    finally:
        proxy.close()


def logged_in(user: Any) -> Client:
    """A test client signed in as ``user`` that sees what a browser sees: the response that went
    out (a 503 page), not the exception re-raised into the test."""
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client
