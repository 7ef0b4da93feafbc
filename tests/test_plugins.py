"""The plugin system: discovery at start-up, what is skipped and why, and every extension point.

The dummy plugin (tests/plugins/dummy_plugin) is enabled for the whole test run through
``PORTAL_PLUGINS`` (tests/plugin_env.py), exactly as an operator enables one.
"""

from __future__ import annotations

import io
import logging
from importlib import metadata

import httpx
import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from portal import __version__, hooks
from portal.env import env_json_object
from portal.navigation import NavItem
from portal.plugins import COMPOSER_ACTIONS, DASHBOARD_WIDGETS, NAV_ITEMS, plugin_settings
from portal.plugins.discovery import ENTRY_POINT, SETTING, discover
from portal.registry import DashboardWidget, registry
from tests.browser import PASSWORD, WebPortal
from tests.plugins.dummy_plugin.models import Note
from tests.websocket import open_socket

DUMMY = "tests.plugins.dummy_plugin"
INCOMPATIBLE = "tests.plugins.incompatible_plugin"
NEEDS_SETTING = "tests.plugins.needs_setting_plugin"
BROKEN = "tests.plugins.broken_plugin"
FAILING_READY = "tests.plugins.failing_ready_plugin"


def found(listed, **options):
    options.setdefault("portal_version", __version__)
    options.setdefault("plugin_settings", {})
    options.setdefault("use_entry_points", False)
    return discover(listed, **options)


# --- discovery ------------------------------------------------------------------------------


def test_a_listed_plugin_is_found_with_its_app_config():
    discovery = found([DUMMY])
    assert [(plugin.slug, plugin.version, plugin.source) for plugin in discovery.found] == [("dummy", "1.2.3", SETTING)]
    assert discovery.apps == ["tests.plugins.dummy_plugin.apps.DummyPluginConfig"]
    assert discovery.skipped == ()


def test_a_plugin_can_be_listed_by_its_config_class():
    discovery = found(["tests.plugins.dummy_plugin.apps.DummyPluginConfig"])
    assert [plugin.slug for plugin in discovery.found] == ["dummy"]


def test_an_installed_plugin_is_found_through_its_entry_point(monkeypatch):
    entry_point = metadata.EntryPoint(
        name="dummy", value="tests.plugins.dummy_plugin.apps:DummyPluginConfig", group="portal.plugins"
    )
    monkeypatch.setattr(metadata, "entry_points", lambda group: [entry_point] if group == "portal.plugins" else [])
    discovery = found([DUMMY], use_entry_points=True)
    # Installed and listed too: loaded once, as the entry point found it.
    assert [(plugin.slug, plugin.source) for plugin in discovery.found] == [("dummy", ENTRY_POINT)]


def test_an_incompatible_plugin_is_skipped_with_the_versions_in_the_warning(caplog):
    with caplog.at_level(logging.WARNING, "portal.plugins"):
        discovery = found([INCOMPATIBLE, DUMMY])
    assert [plugin.slug for plugin in discovery.found] == ["dummy"]
    (skipped,) = discovery.skipped
    assert skipped.reference == INCOMPATIBLE
    assert "needs portal 99.0 or newer" in skipped.reason
    assert __version__ in skipped.reason
    assert INCOMPATIBLE in caplog.text


@pytest.mark.parametrize(
    ("portal_version", "compatible"), [("0.1.0", True), ("0.1.9", True), ("0.2.0", False), ("0.0.9", False)]
)
def test_the_maximum_portal_version_admits_its_patch_releases(portal_version, compatible):
    discovery = found([DUMMY], portal_version=portal_version)  # the dummy says 0.1 to 0.1
    assert bool(discovery.found) is compatible


def test_a_plugin_missing_a_required_setting_is_skipped_and_says_how_to_set_it():
    discovery = found([NEEDS_SETTING])
    assert discovery.found == ()
    assert "api_key" in discovery.skipped[0].reason
    assert "PORTAL_PLUGIN_SETTINGS" in discovery.skipped[0].reason


def test_a_plugin_with_its_required_setting_is_loaded():
    discovery = found([NEEDS_SETTING], plugin_settings={"needs-setting": {"api_key": "k"}})
    assert [plugin.slug for plugin in discovery.found] == ["needs-setting"]


def test_a_plugin_that_fails_to_import_is_skipped_with_the_error():
    discovery = found([BROKEN, "no_such_package_anywhere", DUMMY])
    assert [plugin.slug for plugin in discovery.found] == ["dummy"]
    reasons = {item.reference: item.reason for item in discovery.skipped}
    assert "a_module_that_is_not_installed" in reasons[BROKEN]
    assert "failed to import" in reasons["no_such_package_anywhere"]


def test_something_that_is_not_a_plugin_config_is_skipped():
    discovery = found(["portal.apps.PortalConfig"])
    assert "not a subclass of portal.plugins.PluginConfig" in discovery.skipped[0].reason


def test_a_disabled_plugin_is_skipped():
    discovery = found([DUMMY], disabled=["dummy"])
    assert discovery.found == ()
    assert "PORTAL_PLUGINS_DISABLED" in discovery.skipped[0].reason


def test_settings_of_a_plugin_that_are_not_an_object_stop_start_up():
    with pytest.raises(ValueError, match="must be a JSON object"):
        found([DUMMY], plugin_settings={"dummy": ["greeting"]})


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", '"text"'])
def test_plugin_settings_that_are_not_a_json_object_are_an_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("PORTAL_PLUGIN_SETTINGS", value)
    with pytest.raises(ImproperlyConfigured, match="PORTAL_PLUGIN_SETTINGS"):
        env_json_object("PORTAL_PLUGIN_SETTINGS")


def test_plugin_settings_can_come_from_a_file(monkeypatch, tmp_path):
    path = tmp_path / "plugins.json"
    path.write_text('{"dummy": {"greeting": "moin"}}')
    monkeypatch.setenv("PORTAL_PLUGIN_SETTINGS_FILE", str(path))
    assert env_json_object("PORTAL_PLUGIN_SETTINGS") == {"dummy": {"greeting": "moin"}}


# --- a portal with broken plugins still serves ---------------------------------------------


@pytest.fixture(scope="module")
def broken_portal(tmp_path_factory):
    web = WebPortal(
        tmp_path_factory.mktemp("broken-plugins"),
        env={"PORTAL_PLUGINS": ",".join([DUMMY, INCOMPATIBLE, NEEDS_SETTING, BROKEN, FAILING_READY])},
    )
    web.start()
    web.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from accounts.roles import assign_role, ADMINS; "
        f"assign_role(get_user_model().objects.create_user('adam', 'adam@example.com', {PASSWORD!r}), ADMINS)",
    )
    yield web
    web.stop()


def logged_in(web: WebPortal, username: str) -> httpx.Client:
    client = httpx.Client(base_url=web.url, timeout=10, follow_redirects=True)
    page = client.get("/accounts/login/")
    token = page.cookies.get("csrftoken") or client.cookies.get("csrftoken")
    response = client.post(
        "/accounts/login/",
        data={"login": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{web.url}/accounts/login/"},
    )
    assert response.status_code == 200
    return client


def test_a_portal_with_broken_plugins_starts_serves_and_shows_admins_why(broken_portal):
    assert httpx.get(f"{broken_portal.url}/healthz").status_code == 200
    admin = logged_in(broken_portal, "adam")
    home = admin.get("/")
    assert home.status_code == 200
    assert "Half-registered" not in home.text, "the failing plugin's registrations were taken out"
    page = admin.get("/plugins/").text
    for reference, words in [
        (INCOMPATIBLE, "needs portal 99.0 or newer"),
        (NEEDS_SETTING, "api_key missing"),
        (BROKEN, "No module named"),
        ("failing-ready", "the plugin&#x27;s start-up broke"),
    ]:
        row = page.split(f'data-plugin="{reference}"', 1)[1].split("</tr>", 1)[0]
        assert words in row, (reference, row)
    assert 'data-plugin="dummy" data-state="running"' in page
    dummy = page.split('data-plugin="dummy"', 1)[1].split("</tr>", 1)[0]
    assert "<code>inference.before_generate (50)</code>" in dummy
    assert 'data-plugin="failing-ready" data-state="failed"' in page
    assert admin.get("/plugins/dummy/").status_code == 200
    assert admin.get("/plugins/needs-setting/").status_code == 404
    log = broken_portal.log.read_text()
    assert "plugin failing-ready failed to start" in log


# --- the dummy plugin's extension points --------------------------------------------------


def test_the_plugin_is_registered_under_its_slug_with_its_settings(settings):
    assert registry["plugins"]["dummy"].version == "1.2.3"
    assert plugin_settings("dummy") == {"greeting": "hello", "shout_suffix": "!"}
    settings.PORTAL_PLUGIN_SETTINGS = {"dummy": {"greeting": "moin"}}
    assert plugin_settings("dummy")["greeting"] == "moin"
    with pytest.raises(TypeError):
        plugin_settings("dummy")["greeting"] = "changed"  # type: ignore[index]
    with pytest.raises(LookupError, match="no-such-plugin"):
        plugin_settings("no-such-plugin")


def test_the_plugins_pages_are_mounted_under_its_slug_for_its_roles(alice, audrey, client_for):
    response = client_for(alice).get("/plugins/dummy/")
    assert response.status_code == 200
    assert b"hello, dummy page" in response.content
    assert b"/static/dummy_plugin/dummy.css" in response.content
    assert client_for(audrey).get("/plugins/dummy/").status_code == 403


def test_the_plugins_static_files_and_templates_come_from_its_app(db):
    assert finders.find("dummy_plugin/dummy.css") is not None
    assert finders.find("dummy_plugin/action.js") is not None


def test_the_plugins_nav_item_shows_to_its_roles_and_its_nav_hook_adds_live_items(alice, audrey, adam, client_for):
    assert b'data-nav="dummy:index"' in client_for(alice).get("/").content
    assert b'data-nav="dummy:index"' not in client_for(audrey).get("/").content
    assert b"Dummy (live)" not in client_for(alice).get("/").content
    assert b"Dummy (live)" in client_for(adam).get("/").content  # the hook's item is for staff


def test_the_home_page_shows_the_plugins_widget_and_its_hook_widget(alice, client_for):
    Note.objects.create(text="one")
    page = client_for(alice).get("/").content.decode()
    assert "Dummy notes: 1" in page, "the plugin's model, migrated, read by its widget"
    assert "hello from a widget hook" in page


def test_the_chat_composer_offers_the_plugins_action_to_its_roles(alice, adam, client_for):
    page = client_for(alice).get("/chat/").content.decode()
    assert "Dummy text" in page
    assert "/static/dummy_plugin/action.js" in page


def test_the_plugins_redactor_is_in_the_registrys_redactors():
    (redactor,) = [item for item in registry["redactors"] if item.name == "order_code"]
    assert redactor.apply("order ORD-123456 shipped") == "order [REDACTED:order_code] shipped"


def test_the_plugins_management_command_runs(db):
    out = io.StringIO()
    call_command("dummy_hello", stdout=out)
    assert out.getvalue().strip() == "hello from the dummy plugin"


@pytest.mark.django_db(transaction=True)
async def test_the_plugins_websocket_route_is_mounted_under_its_slug(alice):
    socket, connected, _ = await open_socket("/ws/plugins/dummy/echo/", alice)
    assert connected
    await socket.send_json_to({"say": "hi"})
    assert await socket.receive_json_from(timeout=5) == {"type": "echo", "content": {"say": "hi"}}
    await socket.disconnect()
    _, connected, code = await open_socket("/ws/plugins/dummy/echo/")
    assert not connected
    assert code == 4401


# --- page hooks fail open -----------------------------------------------------------------


def broken_hook(request):
    raise RuntimeError("a page hook broke")


@pytest.mark.parametrize("name", [NAV_ITEMS, DASHBOARD_WIDGETS, COMPOSER_ACTIONS])
def test_a_failing_page_hook_is_logged_and_the_page_still_renders(name, alice, client_for, caplog):
    client = client_for(alice)
    with hooks.register_temporarily(name, broken_hook), caplog.at_level(logging.ERROR, "portal.plugins"):
        assert client.get("/").status_code == 200
        assert client.get("/chat/").status_code == 200
    assert f"{name} hook of plugin" in caplog.text
    assert "a page hook broke" in caplog.text


def test_a_failing_dashboard_widget_is_left_out_and_the_others_render(alice, client_for, caplog):
    def failing_context(request):
        raise ZeroDivisionError("a widget broke")

    def widgets(request):
        return [DashboardWidget("dummy_plugin/greeting.html", failing_context, order=1)]

    with hooks.register_temporarily(DASHBOARD_WIDGETS, widgets), caplog.at_level(logging.ERROR, "portal.dashboard"):
        page = client_for(alice).get("/")
    assert page.status_code == 200
    assert b"Dummy notes" in page.content
    assert "ZeroDivisionError" in caplog.text


def test_a_nav_hook_entry_for_another_role_is_not_shown(alice, client_for):
    def items(request):
        return [NavItem("Secret", "home", lambda user: False)]

    with hooks.register_temporarily(NAV_ITEMS, items):
        assert b"Secret" not in client_for(alice).get("/").content
