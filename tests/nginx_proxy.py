"""Debian's nginx running the shipped ``deploy/nginx.conf`` in front of a test portal.

The site configuration is generated from the shipped file, changing only what cannot be the
same on a test machine: the listen ports (loopback, free ports), the upstream servers (the
test's Daphne), the certificate paths (a self-signed certificate made here) and, in the main
configuration around it, the pid, log and temporary paths. Everything else (the headers,
the WebSocket upgrade, buffering, timeouts) is exactly what operators deploy, so these
tests fail when the shipped file regresses.

Without nginx the tests skip with the install command, except with
``PORTAL_REQUIRE_NGINX=1`` (CI), where they fail.
"""

from __future__ import annotations

import getpass
import os
import re
import signal
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.external_servers import self_signed
from tests.stack import BASE_DIR, wait_until

NGINX = Path(os.environ.get("PORTAL_TEST_NGINX", "/usr/sbin/nginx"))
SHIPPED = BASE_DIR / "deploy" / "nginx.conf"
INSTALL = "apt-get install nginx (then `service nginx stop`: the tests start their own)"
# The ports the shipped file listens on: 443 for the site, 80 for the redirect to HTTPS.
SHIPPED_HTTPS_PORT, SHIPPED_HTTP_PORT = 443, 80


def require_nginx() -> None:
    """Skip the calling test module without Debian's nginx; fail instead in CI (``PORTAL_REQUIRE_NGINX=1``).

    Called at import, before the session's engine stack would be built for nothing.
    """
    if NGINX.exists():
        return
    message = f"the reverse-proxy tests need nginx at {NGINX}: {INSTALL}"
    if os.environ.get("PORTAL_REQUIRE_NGINX") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def _substitute(pattern: str, replacement: str, text: str, what: str) -> str:
    """Replace every match of ``pattern``; a shipped file without one is a changed layout: say so."""
    result, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if count == 0:
        raise AssertionError(f"deploy/nginx.conf no longer has {what}; update tests/nginx_proxy.py with it")
    return result


def site_config(shipped: str, *, https_port: int, http_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    """Return the shipped site configuration with test ports, upstream and certificate paths."""
    ports = {SHIPPED_HTTPS_PORT: https_port, SHIPPED_HTTP_PORT: http_port}
    listens = [int(port) for port in re.findall(r"^\s*listen\s+(\d+)\b", shipped, flags=re.MULTILINE)]
    if sorted(listens) != sorted(ports):
        raise AssertionError(f"deploy/nginx.conf listens on {listens}, the test expects {sorted(ports)}")
    text = re.sub(
        r"^(\s*listen\s+)(\d+)\b",
        lambda match: f"{match.group(1)}127.0.0.1:{ports[int(match.group(2))]}",
        shipped,
        flags=re.MULTILINE,
    )

    def one_upstream(block: re.Match[str]) -> str:
        # Every shipped Daphne line becomes the test's one Daphne (nginx refuses duplicates).
        servers = re.sub(r"^\s*server\s+\S+;\n", "", block.group(2), flags=re.MULTILINE)
        return f"{block.group(1)}{servers}    server 127.0.0.1:{upstream_port};\n}}"

    text, count = re.subn(r"^(upstream\s+\S+\s*\{\n)(.*?)^\}", one_upstream, text, flags=re.MULTILINE | re.DOTALL)
    if count != 1:
        raise AssertionError(f"deploy/nginx.conf has {count} upstream blocks; the test expects one")
    text = _substitute(r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};", text, "ssl_certificate")
    return _substitute(r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};", text, "ssl_certificate_key")


def main_config(directory: Path, site: Path) -> str:
    """The main configuration around the site: what Debian's /etc/nginx/nginx.conf does, in ``directory``."""
    # As root the workers would otherwise run as nobody, who cannot enter pytest's 0700 temp dirs.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}\n    include {site};\n}}\n"
    )


@dataclass
class Nginx:
    """An nginx process of the test's own, serving the shipped site configuration."""

    directory: Path
    upstream_port: int
    https_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    ca_file: Path = field(init=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the test's certificate (and verifies it)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def start(self) -> None:
        self.ca_file, key = self_signed(self.directory)
        site = self.directory / "portal.conf"
        site.write_text(
            site_config(
                SHIPPED.read_text(),
                https_port=self.https_port,
                http_port=self.http_port,
                upstream_port=self.upstream_port,
                cert=self.ca_file,
                key=key,
            )
        )
        conf = self.directory / "nginx.conf"
        conf.write_text(main_config(self.directory, site))
        log = self.directory / "nginx.out"
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(self.directory), "-c", str(conf), "-e", str(self.directory / "startup.log")],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"nginx exited with {process.returncode}:\n{self.logs()}")
            try:
                with httpx.Client(verify=self.ssl_context(), timeout=2) as client:
                    return client.get(f"{self.url}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 60, "nginx in front of the portal")

    def logs(self) -> str:
        texts = []
        for name in ("startup.log", "nginx.out", "error.log"):
            path = self.directory / name
            if path.exists():
                texts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # fast shutdown: open streams are the test's own
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
