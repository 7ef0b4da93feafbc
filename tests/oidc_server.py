"""A real OpenID Connect provider on loopback: tests/oidc_provider.mjs (npm's oidc-provider) under node.

Without node or the npm package the tests skip with the command that installs them, except
in CI (``PORTAL_REQUIRE_BROWSER=1``), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import BASE_DIR, free_port

SCRIPT = BASE_DIR / "tests" / "oidc_provider.mjs"
CLIENT_ID = "portal"
CLIENT_SECRET = "provider-secret-for-tests-only"


class OidcProvider:
    """The provider process; ``set_claims`` rewrites what it says about a login name."""

    def __init__(self, directory: Path, redirect_uris: list[str]) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.claims_file = directory / "claims.json"
        self.claims_file.write_text("{}")
        self.log = directory / "oidc-provider.log"
        self.redirect_uris = redirect_uris
        self.process: subprocess.Popen[bytes] | None = None

    def set_claims(self, login: str, claims: dict[str, Any]) -> None:
        current = json.loads(self.claims_file.read_text())
        current[login] = claims
        self.claims_file.write_text(json.dumps(current))

    def start(self) -> None:
        node = shutil.which("node")
        if node is None or not (BASE_DIR / "node_modules" / "oidc-provider").is_dir():
            message = (
                "the OpenID Connect tests need node and npm's oidc-provider: apt-get install -y nodejs npm && make node"
            )
            if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
                pytest.fail(message)
            pytest.skip(message)
        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_REDIRECT_URIS": ",".join(self.redirect_uris),
            "OIDC_CLAIMS_FILE": str(self.claims_file),
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [node, str(SCRIPT)], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"oidc-provider did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def settings_for(self, provider_id: str = "company", **overrides: Any) -> dict[str, Any]:
        """Return ``settings.PORTAL_OIDC`` as portal/settings.py would build it for this provider."""
        config: dict[str, Any] = {
            "name": "Company",
            "server_url": self.issuer,
            "client_id": CLIENT_ID,
            "secret": CLIENT_SECRET,
            "scopes": ["openid", "profile", "email", "groups"],
            "groups_claim": "groups",
            "group_map": {"portal-users": ["Members"], "portal-admins": ["Admins"], "portal-auditors": ["Auditors"]},
            "token_auth_method": "auto",
            "pkce": True,
        }
        return {provider_id: {**config, **overrides}}


def oidc_env(provider: OidcProvider) -> dict[str, str]:
    """Return the PORTAL_OIDC_* variables that point a portal at ``provider`` (the documented ones)."""
    return {
        "PORTAL_OIDC_PROVIDERS": "company",
        "PORTAL_OIDC_COMPANY_NAME": "Company",
        "PORTAL_OIDC_COMPANY_SERVER_URL": provider.issuer,
        "PORTAL_OIDC_COMPANY_CLIENT_ID": CLIENT_ID,
        "PORTAL_OIDC_COMPANY_CLIENT_SECRET": CLIENT_SECRET,
        "PORTAL_OIDC_COMPANY_SCOPES": "openid,profile,email,groups",
        "PORTAL_OIDC_COMPANY_GROUP_MAP": json.dumps(
            {"portal-users": "Members", "portal-admins": "Admins", "portal-auditors": "Auditors"}
        ),
    }


@pytest.fixture
def oidc_provider(tmp_path: Path) -> Iterator[OidcProvider]:
    """A provider whose one client accepts the test server's and a second portal's callbacks."""
    provider = OidcProvider(tmp_path, ["http://testserver/accounts/oidc/company/login/callback/"])
    provider.start()
    yield provider
    provider.stop()


def sign_in_through(provider: OidcProvider, client: Any, login: str) -> Any:
    """Sign in as ``login`` with the Django test ``client``: the provider's pages are walked with httpx.

    Returns the portal's response to the provider's callback (the end of the sign-in).
    """
    import re

    response = client.post("/accounts/oidc/company/login/", {"process": "login"})
    assert response.status_code == 302, response.content.decode()[:2000]
    location = response["Location"]
    with httpx.Client(timeout=10) as browser:
        while not location.startswith("http://testserver/"):
            answer = browser.get(location)
            if answer.status_code == 200:  # the provider's login form
                action = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
                assert action, answer.text[:2000]
                answer = browser.post(action.group(1), data={"prompt": "login", "login": login, "password": "any"})
            assert answer.is_redirect, answer.text[:2000]
            location = str(answer.next_request.url) if answer.next_request else answer.headers["location"]
    return client.get(location.removeprefix("http://testserver"))
