"""Servers an external engine can be pointed at in tests: a stub vLLM, a plain web server, TLS.

- :class:`OpenAIStub` is a **stub** of an OpenAI-compatible vLLM server (``/health``,
  ``/v1/models`` with a key, ``/metrics``) whose model list and load a test can change; it
  isolates the probe and the router. The real vLLM is in ``tests/test_external_engine_real.py``.
- :func:`plain_web_server` is Python's own ``http.server`` serving a folder: a real program
  that is not vLLM and not OpenAI-compatible.
- :func:`self_signed` writes a self-signed certificate for 127.0.0.1 (a server with it is a
  TLS error unless the client is given the certificate as its CA bundle).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

API_KEY = "external-stub-key"


class OpenAIStub:
    """A stub vLLM: a key-checked model list, /health and /metrics with a settable load."""

    def __init__(self, models: list[str], *, tls: ssl.SSLContext | None = None) -> None:
        self.models = list(models)
        self.running = 0
        self.seen_paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        threading.Thread(target=self.server.serve_forever, name="openai-stub", daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str, kind: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stub.seen_paths.append(self.path)
                if self.path == "/health":
                    self._send(200, "")
                elif self.path == "/metrics":
                    self._send(200, f'vllm:num_requests_running{{engine="0"}} {stub.running}.0\n', "text/plain")
                elif self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._send(401, json.dumps({"error": "Unauthorized"}))
                elif self.path == "/v1/models":
                    data = [{"id": model, "object": "model"} for model in stub.models]
                    self._send(200, json.dumps({"object": "list", "data": data}))
                else:
                    self._send(404, "{}")

        return Handler


@contextmanager
def plain_web_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` with the standard library's ``http.server``; yield its URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="plain-web", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate and key for 127.0.0.1 into ``folder``; return their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)  # nginx and OpenSSL are right to distrust a key others can read
    return cert_path, key_path


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
