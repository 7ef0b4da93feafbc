"""Where an engine listens, and the one way to open an HTTP connection to it.

A managed engine serves on a Unix domain socket (``vllm ... --uds PATH``) in a directory
only the portal's user can open (mode 0700), never on a TCP port: vLLM's ``--api-key``
guards ``/v1/*`` only, and other routes (``/invocations``, ``/tokenize``, ``/metrics``) answer
anyone who can connect. An external engine is a URL (http or https). The supervisor writes
the managed engine's address into ``EngineState.base_url`` as ``unix:PATH``; everything that
talks to an engine asks :func:`engine_address` (or :func:`parse_address` for an address it
already holds) and opens its client through :class:`EngineAddress`, so a socket and a URL are
the same to callers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
from django.conf import settings

if TYPE_CHECKING:
    from inference.models import EngineConfig

UNIX_PREFIX = "unix:"
# Requests over a socket still need a URL; the transport ignores its host.
SOCKET_ORIGIN = "http://engine"
# sun_path holds 108 bytes on Linux, the last one a NUL.
MAX_SOCKET_PATH = 107


class SocketDirError(Exception):
    """The socket directory exists but is not private to the portal's user; nothing is launched."""


@dataclass(frozen=True)
class EngineAddress:
    """An engine's address: ``unix:PATH`` (a managed engine's socket) or an http(s) URL."""

    text: str
    ca_bundle: str = ""

    @property
    def socket_path(self) -> str:
        """The socket's path, or "" for a URL."""
        return self.text[len(UNIX_PREFIX) :] if self.text.startswith(UNIX_PREFIX) else ""

    def url(self, path: str) -> str:
        """The URL of ``path`` (``/health``, ``/v1/chat/completions``) at this engine."""
        origin = SOCKET_ORIGIN if self.socket_path else self.text.rstrip("/")
        return origin + path

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True

    def client(self, timeout: float | httpx.Timeout) -> httpx.Client:
        """A synchronous client for this engine (close it, or use it in ``with``).

        Proxies from the environment never apply. Raises ``OSError``/``ssl.SSLError`` when the
        CA bundle cannot be read.
        """
        transport = httpx.HTTPTransport(uds=self.socket_path or None, verify=self._verify())
        return httpx.Client(transport=transport, timeout=timeout, trust_env=False)

    def async_client(self, timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.AsyncClient:
        """An asynchronous pooled client for this engine (same contract as :meth:`client`)."""
        transport = httpx.AsyncHTTPTransport(uds=self.socket_path or None, verify=self._verify(), limits=limits)
        return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


def parse_address(text: str, ca_bundle: str = "") -> EngineAddress:
    """Return the address stored as ``text`` (``unix:PATH`` or a URL)."""
    return EngineAddress(text=text, ca_bundle=ca_bundle)


def engine_address(config: EngineConfig) -> EngineAddress | None:
    """Return where ``config``'s engine is reached: the one answer for every caller.

    An external engine: its registered URL and CA bundle. A managed engine: the address its
    supervisor wrote for the current launch, or None when there is none (stopped, or no
    supervisor ever started it).
    """
    if config.is_external:
        return external_address(config)
    state = getattr(config, "state", None)
    if state is None or not state.base_url:
        return None
    return EngineAddress(text=state.base_url)


def external_address(config: EngineConfig) -> EngineAddress:
    """An external engine's address: its registered URL and CA bundle (what :func:`engine_address` gives)."""
    return EngineAddress(text=config.url, ca_bundle=config.ca_bundle)


def socket_address(path: Path) -> str:
    """The stored form of a socket's address (what ``EngineState.base_url`` holds)."""
    return f"{UNIX_PREFIX}{path}"


# --- the socket directory (supervisor side) ---------------------------------------------


def fits_a_socket(folder: Path) -> bool:
    """True when the longest engine socket name fits in sun_path under ``folder``."""
    # The longest socket name is "<64-character engine name>.sock".
    return len(os.fsencode(folder)) + 1 + 64 + len(".sock") <= MAX_SOCKET_PATH


def is_private(path: Path) -> bool:
    """True when ``path`` is a directory (not a link) owned by this user with mode 0700."""
    info = path.lstat()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700


def _make_private(path: Path) -> Path:
    """Create ``path`` 0700 (or accept it as it is when it already is ours and 0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not is_private(path):
        # Someone else's directory, a symlink, or a loose mode: never put the engine's socket there.
        raise SocketDirError(
            f"The engine socket directory {path} must be a directory owned by this user with mode 0700 "
            f"(chmod 700 {path}, or set PORTAL_ENGINE_SOCKET_DIR to another directory)."
        )
    return path


# Fallback directories this process created under /tmp (removed by release_socket_dir).
_temporary: list[Path] = []


@functools.cache
def _socket_dir(configured: str) -> Path:
    wanted = Path(configured)
    if fits_a_socket(wanted):
        return _make_private(wanted)
    # Too long for sun_path: a fresh private directory under /tmp (mkdtemp creates it 0700
    # with a random name, so no other user can have prepared it). Removed by the supervisor.
    fallback = Path(tempfile.mkdtemp(prefix="portal-engine-", dir="/tmp"))
    _temporary.append(fallback)
    return fallback


def socket_dir() -> Path:
    """Return this process's private socket directory, creating it 0700 on first use.

    ``PORTAL_ENGINE_SOCKET_DIR`` (default ``DATA_DIR/run``), or a fresh private directory
    under /tmp when that path is too long for a socket. Raises :class:`SocketDirError` when
    the configured directory exists and is not private to this user.
    """
    return _socket_dir(str(settings.ENGINE_SOCKET_DIR))


def socket_path(config: EngineConfig) -> Path:
    """The socket a managed engine listens on (the directory is created on first use)."""
    return socket_dir() / f"{config.name}.sock"


def release_socket_dir() -> None:
    """Remove the fallback directory under /tmp this process created, once its engines stopped."""
    for folder in _temporary:
        for leftover in folder.glob("*.sock"):
            remove_stale_socket(leftover)
        with contextlib.suppress(OSError):
            folder.rmdir()
    _temporary.clear()
    _socket_dir.cache_clear()


def remove_stale_socket(path: Path) -> None:
    """Remove what a previous launch left at ``path`` (vLLM cannot bind over it)."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


def listener_pid(path: str) -> int | None:
    """The pid of the process listening on the socket ``path`` (SO_PEERCRED), or None if none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except OSError:
            return None
        credentials = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", credentials)
    return int(pid)


def listener_is_ours(address: EngineAddress, ancestor: int) -> bool:
    """True when the process listening at ``address`` is ``ancestor`` or one of its descendants.

    Only a socket can say who listens; a URL (an engine the portal did not start) is taken
    as it is.
    """
    if not address.socket_path:
        return True
    pid = listener_pid(address.socket_path)
    if pid is None:
        return False
    try:
        lineage: list[Any] = [psutil.Process(pid), *psutil.Process(pid).parents()]
    except psutil.Error:
        return False
    return any(process.pid == ancestor for process in lineage)
