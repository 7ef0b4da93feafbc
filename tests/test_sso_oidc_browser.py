"""Sign in with a real OpenID Connect provider in headless Chromium: the groups claim decides the role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser import (  # noqa: F401 - browser_fixture is a fixture
    WebPortal,
    browser_fixture,
    screenshot,
)
from tests.oidc_server import OidcProvider, oidc_env

pytestmark = pytest.mark.browser


def sign_in_with_company(page: Any, portal: WebPortal, login: str) -> None:
    page.goto(f"{portal.url}/accounts/login/")
    screenshot(page, "sso-login-page")
    page.click("text=Sign in with Company")
    if page.locator("input[name=login]").count():  # the provider's own login form (first time)
        page.fill("input[name=login]", login)
        page.fill("input[name=password]", "any password: the test provider takes it")
        page.click("button[type=submit]")
    try:
        page.wait_for_url(f"{portal.url}/", timeout=30_000)
    except Exception:  # noqa: BLE001 - any failure: show where the sign-in ended
        screenshot(page, "sso-oidc-failed")
        raise AssertionError(
            f"sign-in ended at {page.url}: {page.inner_text('body')[:1500]}\n{portal.log.read_text()[-3000:]}"
        ) from None


def roles_on_account_page(page: Any, portal: WebPortal) -> list[str]:
    page.goto(f"{portal.url}/account/")
    roles = sorted(page.locator("dt:text-is('Roles') + dd .badge").all_inner_texts())
    assert roles or "none" in page.inner_text("body"), portal.log.read_text()[-4000:]
    return roles


def test_the_groups_claim_decides_the_role_and_a_changed_claim_changes_it(browser: Any, tmp_path: Path) -> None:
    provider = OidcProvider(tmp_path, [])
    portal = WebPortal(tmp_path, env=oidc_env(provider))
    provider.redirect_uris = [f"{portal.url}/accounts/oidc/company/login/callback/"]
    provider.set_claims(
        "carol",
        {
            "email": "carol@example.org",
            "email_verified": True,
            "preferred_username": "carol",
            "groups": ["portal-users"],
        },
    )
    provider.start()
    context = browser.new_context()
    try:
        portal.start()
        page = context.new_page()
        sign_in_with_company(page, portal, "carol")
        assert roles_on_account_page(page, portal) == ["Members"]
        assert page.locator("text=carol@example.org").count() == 1

        # The provider moves carol to the auditors; her next sign-in follows.
        provider.set_claims(
            "carol",
            {
                "email": "carol@example.org",
                "email_verified": True,
                "preferred_username": "carol",
                "groups": ["portal-auditors"],
            },
        )
        page.goto(f"{portal.url}/accounts/logout/")
        page.click("button[type=submit]")
        sign_in_with_company(page, portal, "carol")
        assert roles_on_account_page(page, portal) == ["Auditors"]
        screenshot(page, "sso-oidc-auditor")
    finally:
        context.close()
        portal.stop()
        provider.stop()
