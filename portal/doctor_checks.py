"""More of ``manage.py doctor``: the public URL, Redis and processes, metrics, permissions, static files.

Each check returns a :class:`portal.doctor.Finding` (or yields several) and reads only
settings, the file system and the process table; none changes anything. They are portal-level
(no app is imported); the engine checks live in ``inference/doctor_checks_ops.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from django.conf import settings
from django.http.request import validate_host

from portal.doctor import FAIL, OK, WARN, Finding, is_loopback
from portal.metrics import multiprocess_dir

DAPHNE_APPLICATION = "portal.asgi:application"


def _public_url() -> tuple[str, str, int] | None:
    """(scheme, host, port) of PORTAL_PUBLIC_URL, or None when it is not set."""
    url = settings.PORTAL_PUBLIC_URL
    if not url:
        return None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port


def check_public_url_binding() -> Finding:
    """The bind address must suit the public URL: loopback needs a proxy, a wildcard needs none.

    Fails when people are told a remote address but the portal listens on loopback with no
    proxy in front, and when the portal sits behind a proxy yet listens on every interface
    (anyone could then skip the proxy and forge X-Forwarded-For).
    """
    name = "public URL binding"
    public = _public_url()
    host, behind_proxy = settings.PORTAL_HOST, settings.PORTAL_BEHIND_PROXY
    if public is None:
        if settings.PRODUCTION:
            return Finding(
                name,
                WARN,
                "PORTAL_PUBLIC_URL is not set, so doctor cannot compare the bind address, hosts and proxy with it.",
                "Set PORTAL_PUBLIC_URL to the address people open, e.g. https://portal.example.com.",
            )
        return Finding(name, OK, "No PORTAL_PUBLIC_URL: the portal is used where it runs.")
    scheme, public_host, public_port = public
    remote = not is_loopback(public_host)
    if remote and is_loopback(host) and not behind_proxy:
        return Finding(
            name,
            FAIL,
            f"People open {settings.PORTAL_PUBLIC_URL}, but the portal listens on {host} (this machine only) "
            "and no reverse proxy is declared.",
            "Put nginx in front (deploy/nginx.conf) and set PORTAL_BEHIND_PROXY=true, or set PORTAL_HOST=0.0.0.0.",
        )
    if behind_proxy and not is_loopback(host):
        return Finding(
            name,
            FAIL,
            f"PORTAL_BEHIND_PROXY=true but the portal listens on {host}: anyone can bypass the proxy and claim "
            "any address in X-Forwarded-For.",
            "Set PORTAL_HOST=127.0.0.1 (the proxy forwards to it), or firewall the port to the proxy only.",
        )
    if not remote and not is_loopback(host):
        return Finding(
            name,
            WARN,
            f"The public URL {settings.PORTAL_PUBLIC_URL} is local, but the portal listens on {host}, open to the "
            "network.",
            "Set PORTAL_HOST=127.0.0.1, or give the real public address in PORTAL_PUBLIC_URL.",
        )
    if remote and not behind_proxy and public_port != settings.PORTAL_PORT:
        return Finding(
            name,
            FAIL,
            f"The public URL uses port {public_port}, but the portal listens on {settings.PORTAL_PORT} with no proxy.",
            "Put a reverse proxy on the public port (PORTAL_BEHIND_PROXY=true), or fix PORTAL_PUBLIC_URL.",
        )
    if settings.PRODUCTION and scheme != "https":
        return Finding(
            name,
            FAIL,
            f"{settings.PORTAL_PUBLIC_URL} is plain HTTP, but production cookies are HTTPS-only: nobody can log in.",
            "Terminate TLS in the proxy (docs/deploy.md) and use an https:// PORTAL_PUBLIC_URL.",
        )
    return Finding(name, OK, f"{settings.PORTAL_PUBLIC_URL} reaches the portal on {host}:{settings.PORTAL_PORT}.")


def check_public_url_hosts() -> Finding:
    """The public URL's host must be an allowed host, and its origin a trusted CSRF origin behind a proxy."""
    name = "public URL hosts"
    public = _public_url()
    if public is None:
        return Finding(name, OK, "No PORTAL_PUBLIC_URL to compare ALLOWED_HOSTS and CSRF origins with.")
    scheme, public_host, _ = public
    if not validate_host(public_host, settings.ALLOWED_HOSTS):
        return Finding(
            name,
            FAIL,
            f"{public_host} is not in PORTAL_ALLOWED_HOSTS ({', '.join(settings.ALLOWED_HOSTS) or 'empty'}): every "
            "request through the public URL gets 400 Bad Request.",
            f"Add {public_host} to PORTAL_ALLOWED_HOSTS.",
        )
    origin = f"{scheme}://{urlsplit(str(settings.PORTAL_PUBLIC_URL)).netloc}"
    trusted = list(settings.CSRF_TRUSTED_ORIGINS)
    if settings.PORTAL_BEHIND_PROXY and origin not in trusted:
        return Finding(
            name,
            FAIL,
            f"{origin} is not in PORTAL_CSRF_TRUSTED_ORIGINS ({', '.join(trusted) or 'empty'}): behind a proxy, "
            "logins and forms fail with 403 CSRF verification failed.",
            f"Set PORTAL_CSRF_TRUSTED_ORIGINS={origin}.",
        )
    return Finding(name, OK, f"{public_host} is allowed; {origin} is a trusted origin.")


def web_processes() -> int:
    """How many web processes serve the portal: the declared count or the Daphnes running here.

    Only Daphnes of this portal count: started from this checkout (their working directory)
    with this data folder, so another portal on the same machine (or a test's) does not.
    """
    running = 0
    base_dir = str(settings.BASE_DIR)
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = process.info.get("cmdline") or []
        if process.info.get("cwd") != base_dir or not any("daphne" in part for part in cmdline):
            continue
        if any(DAPHNE_APPLICATION in part for part in cmdline) and _same_data_dir(process):
            running += 1
    declared: int = settings.PORTAL_WEB_PROCESSES
    return max(declared, running)


def _same_data_dir(process: psutil.Process) -> bool:
    try:
        data_dir = process.environ().get("PORTAL_DATA_DIR") or str(settings.BASE_DIR / "data")
    except (psutil.Error, OSError):
        return False  # another user's process: not ours to count
    return Path(data_dir).resolve() == settings.DATA_DIR


def check_redis_for_processes() -> Finding:
    """More than one web process needs Redis: in-memory channel layers cannot reach each other."""
    processes = web_processes()
    if processes > 1 and not settings.REDIS_URL:
        return Finding(
            "redis for processes",
            FAIL,
            f"{processes} web processes but no REDIS_URL: a chat answer running in one process never reaches a "
            "socket held by another, and rate limits count per process.",
            "Set REDIS_URL=redis://127.0.0.1:6379/0 (docs/deploy.md), or run a single web process.",
        )
    where = "Redis" if settings.REDIS_URL else "in-memory (one process)"
    return Finding("redis for processes", OK, f"{processes} web process(es); channel layer and cache: {where}.")


def check_metrics_mode() -> Finding:
    """Several web processes need the metrics' multiprocess directory, writable, or scrapes disagree."""
    directory = multiprocess_dir()
    processes = web_processes()
    if directory is None:
        if processes > 1:
            return Finding(
                "metrics",
                WARN,
                f"{processes} web processes without PROMETHEUS_MULTIPROC_DIR: each scrape of /metrics shows the "
                "counters of whichever process answered.",
                "Set PROMETHEUS_MULTIPROC_DIR to an empty directory for every web process (deploy/ units do).",
            )
        return Finding("metrics", OK, "One web process: /metrics counts in memory.")
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        return Finding(
            "metrics",
            FAIL,
            f"PROMETHEUS_MULTIPROC_DIR={directory} is not a writable directory: web processes fail to count.",
            f"Create it, owned by the portal's user: `install -d -m 700 {directory}`.",
        )
    return Finding("metrics", OK, f"Multiprocess metrics in {directory}.")


def _loose(path: Path) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & stat.S_IRWXO:
        return f"{path} is open to every user on this machine (mode {mode:o})"
    if mode & stat.S_IWGRP:
        return f"{path} is writable by its group (mode {mode:o})"
    return None


def _private_files() -> list[Path]:
    """The files that hold secrets: those directly in the data folder, the SQLite database with
    its journals (wherever it lives), and the engine logs (prompts appear in vLLM's errors)."""
    data_dir = Path(settings.DATA_DIR)
    files = [path for path in data_dir.iterdir() if path.is_file()]
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        name = Path(str(database["NAME"]))
        files += [Path(f"{name}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    log_dir = Path(settings.ENGINE_LOG_DIR)
    if log_dir.is_dir():
        files += [path for path in log_dir.iterdir() if path.is_file()]
    return sorted({path for path in files if path.exists()})


def check_data_dir_permissions() -> Finding:
    """The data folder holds the database, the secret key and the logs: others must not read them.

    A folder others can open fails. Files that others could read inside a private folder
    are a warning: the folder keeps them out today, a later ``chmod`` or copy would not.
    """
    name = "data folder"
    data_dir = Path(settings.DATA_DIR)
    if _loose(data_dir):
        return Finding(
            name,
            FAIL,
            f"{_loose(data_dir)}: the database, the secret key and the logs can be read or changed.",
            f"`chmod 700 {data_dir}` and `chmod -R go-rwx {data_dir}` (owned by the user the portal runs as).",
        )
    readable = [path for path in _private_files() if stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO)]
    if readable:
        listed = ", ".join(f"{path} (mode {stat.S_IMODE(path.stat().st_mode):o})" for path in readable)
        return Finding(
            name,
            WARN,
            f"Readable by other users but for the private folder: {listed}. They hold sessions, MFA secrets, "
            "keys or conversations.",
            f"`chmod 600 {' '.join(str(path) for path in readable)}`.",
        )
    return Finding(name, OK, f"{data_dir} and the files in it are private to their owner.")


def check_static_files() -> Finding:
    """Production serves hashed static files from the manifest ``collectstatic`` writes."""
    if not settings.PRODUCTION:
        return Finding("static files", OK, "Development: static files are served from the source folders.")
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if not manifest.is_file():
        return Finding(
            "static files",
            FAIL,
            f"{manifest} is missing: pages fail with a server error in production.",
            "Run `python manage.py collectstatic --noinput` (after every upgrade).",
        )
    return Finding("static files", OK, f"Collected into {settings.STATIC_ROOT}.")


PORTAL_CHECKS = (
    check_public_url_binding,
    check_public_url_hosts,
    check_redis_for_processes,
    check_metrics_mode,
    check_data_dir_permissions,
    check_static_files,
)
