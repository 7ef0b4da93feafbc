"""Diagnose why "the page does not open": each check says what is wrong and what to change.

Used by ``manage.py doctor``. The checks read settings, the database and the network; they
never change anything.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from portal.ports import port_is_free
from portal.registry import registry

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``status`` is ok, warn or fail; ``fix`` says what to change."""

    check: str
    status: str
    detail: str
    fix: str = ""


def is_loopback(host: str) -> bool:
    """Return True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _portal_answers(host: str, port: int) -> bool:
    """True when whatever listens on host:port answers /healthz like the portal does."""
    connection = http.client.HTTPConnection(host, port, timeout=3)
    try:
        connection.request("GET", "/healthz", headers={"Host": "localhost"})
        response = connection.getresponse()
        return response.status == 200 and response.read(16) == b"ok\n"
    except OSError:
        return False
    finally:
        connection.close()


def check_port() -> Finding:
    """Is the configured port free, or already served by a portal?"""
    host, port = settings.PORTAL_HOST, settings.PORTAL_PORT
    if port_is_free(host, port):
        return Finding("port", OK, f"{host}:{port} is free for the portal.")
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - comparison only
    if _portal_answers(probe_host, port):
        return Finding("port", OK, f"The portal is running on {host}:{port}.")
    return Finding(
        "port",
        FAIL,
        f"{host}:{port} is taken by another program.",
        f"Stop it (`ss -ltnp 'sport = :{port}'` shows which) or set PORTAL_PORT to a free port.",
    )


def check_bind_address() -> Finding:
    """Loopback-only binding is the most common reason a colleague cannot open the page."""
    host = settings.PORTAL_HOST
    if is_loopback(host) and settings.PORTAL_BEHIND_PROXY:
        return Finding("bind address", OK, f"PORTAL_HOST={host}: only the reverse proxy reaches the portal.")
    if is_loopback(host):
        return Finding(
            "bind address",
            WARN,
            f"PORTAL_HOST={host}: the portal is reachable from this machine only.",
            "Put a reverse proxy in front (docs/deploy.md), or set PORTAL_HOST=0.0.0.0 "
            "(it then answers to this machine's names and addresses; other names go in PORTAL_ALLOWED_HOSTS).",
        )
    return Finding("bind address", OK, f"PORTAL_HOST={host}: reachable from other machines.")


def check_allowed_hosts() -> Finding:
    """A host name missing here turns every request into 400 Bad Request."""
    hosts = list(settings.ALLOWED_HOSTS)
    if "*" in hosts:
        return Finding("allowed hosts", WARN, "PORTAL_ALLOWED_HOSTS allows any host.", "Name the real host names.")
    name = socket.gethostname()
    if not is_loopback(settings.PORTAL_HOST) and name not in hosts and not any(h.startswith(".") for h in hosts):
        return Finding(
            "allowed hosts",
            WARN,
            f"This machine's name {name!r} is not in PORTAL_ALLOWED_HOSTS ({', '.join(hosts)}).",
            "Add every name people type in the address bar to PORTAL_ALLOWED_HOSTS, or they get 400 Bad Request.",
        )
    return Finding("allowed hosts", OK, f"Answers to: {', '.join(hosts)}.")


def check_database() -> Finding:
    """The database answers and every migration is applied."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    try:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return Finding("database", FAIL, f"The database does not answer: {exc}", "Check DATABASE_URL and the server.")
    if pending:
        return Finding(
            "database",
            FAIL,
            f"{len(pending)} migration(s) are not applied.",
            "Run `python manage.py migrate` (make run does it).",
        )
    return Finding("database", OK, f"{connection.vendor} answers; migrations are applied.")


def check_services() -> Iterator[Finding]:
    """Cache and channel layer, through the same checks as /readyz."""
    from portal import health

    for name, check in (("cache", health.check_cache), ("channel layer", health.check_channel_layer)):
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            result = {"ok": False, "error": str(exc)}
        if result.get("ok"):
            yield Finding(name, OK, "answers.")
        else:
            yield Finding(
                name, FAIL, f"does not answer: {result.get('error', 'no reply')}", "Check REDIS_URL and Redis."
            )


def check_websocket(url: str) -> Finding:
    """Does a WebSocket upgrade sent to ``url`` reach the portal (through any proxy in between)?

    An anonymous upgrade that reaches the portal is refused by it with 403 (or accepted with
    101); a proxy that drops the Upgrade header turns it into a plain request, answered with a
    redirect, 200, 400 or 404.
    """
    parts = urlsplit(url)
    # A route an app registered (the first: the engine status socket), so the probe reaches
    # a consumer and not the router's "no route" error.
    routes = registry["websocket_routes"]
    probe_path = "/" + str(routes[0].pattern).strip("^$") if routes else "/ws/"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Finding("websocket", FAIL, f"{url!r} is not an http(s) URL.", "Give the address people open.")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=5)
    origin = f"{parts.scheme}://{parts.netloc}"
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(),
        "Origin": origin,
    }
    try:
        connection.request("GET", probe_path, headers=headers)
        response = connection.getresponse()
        status = response.status
    except OSError as exc:
        return Finding("websocket", FAIL, f"{url} does not answer: {exc}", "Is the portal (or the proxy) running?")
    finally:
        connection.close()
    if status in (101, 403):
        return Finding("websocket", OK, f"WebSocket upgrades reach the portal through {origin}.")
    return Finding(
        "websocket",
        FAIL,
        f"A WebSocket upgrade to {origin}{probe_path} came back as HTTP {status}: something in between drops it.",
        "Pass the Upgrade and Connection headers in the proxy (deploy/nginx.conf shows how).",
    )


def run_checks(url: str | None = None) -> list[Finding]:
    """Run every check in order; with ``url`` (default: PORTAL_PUBLIC_URL), also test WebSocket upgrades."""
    from portal.doctor_checks import PORTAL_CHECKS

    url = url or settings.PORTAL_PUBLIC_URL
    checks: list[Callable[[], Finding | Iterator[Finding]]] = [
        check_database,
        check_services,
        check_port,
        check_bind_address,
        check_allowed_hosts,
        *PORTAL_CHECKS,
        # The apps' own checks (the inference app's engine checks, ...), from the registry.
        *registry["doctor_checks"],
    ]
    findings: list[Finding] = []
    for check in checks:
        outcome = check()
        findings.extend([outcome] if isinstance(outcome, Finding) else outcome)
        if findings and findings[0].check == "database" and findings[0].status == FAIL:
            break  # nothing else can be read without the database
    if url:
        findings.append(check_websocket(url))
    if os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY"):
        findings.append(
            Finding("proxy variables", WARN, "HTTP_PROXY is set.", "Make sure 127.0.0.1 is in NO_PROXY for the engine.")
        )
    return findings


def run_sso_checks(user: str | None = None) -> list[Finding]:
    """Run the company sign-in checks the apps registered (``sso_checks``); ``user`` is looked up in LDAP."""
    findings: list[Finding] = []
    for check in registry["sso_checks"]:
        findings.extend(check(user))
    return findings
