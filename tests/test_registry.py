"""The registry the apps fill at start-up, the hooks built on it, and who may see what through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from portal import hooks
from portal.access import has_role
from portal.navigation import NavItem
from portal.registry import SEQUENCE_STORES, Registry, RegistryClosed, UrlMount, registry

PORTAL = Path(__file__).resolve().parent.parent / "portal"
APPS = ("accounts", "inference", "chat")


def starting() -> Registry:
    """A registry in the middle of start-up, as ready() sees it."""
    return Registry(started=lambda: False)


def test_the_registry_has_every_documented_key():
    assert set(registry) >= {
        "nav_items",
        "readiness_checks",
        "doctor_checks",
        "websocket_routes",
        "url_mounts",
        "hooks",
        "dashboard_widgets",
        "redactors",
        "plugins",
        "role_checks",
        "sso_checks",
    }


def test_the_registry_refuses_a_new_key():
    with pytest.raises(TypeError, match="fixed"):
        registry["widgets_of_my_plugin"] = []
    with pytest.raises(TypeError, match="fixed"):
        registry.setdefault("widgets_of_my_plugin", [])
    with pytest.raises(TypeError, match="fixed"):
        registry.update({"widgets_of_my_plugin": []})
    with pytest.raises(TypeError, match="fixed"):
        registry.__ior__({"widgets_of_my_plugin": []})  # what `registry |= {...}` calls
    assert "widgets_of_my_plugin" not in registry


def test_the_registry_refuses_to_drop_or_overwrite_a_key():
    with pytest.raises(TypeError):
        del registry["nav_items"]
    with pytest.raises(TypeError):
        registry["nav_items"] = []
    with pytest.raises(TypeError):
        registry.pop("nav_items")
    assert registry["nav_items"], "the apps' entries are still there"


def test_an_unknown_key_names_the_known_ones():
    with pytest.raises(KeyError, match="nav_items"):
        registry["navigation"]
    with pytest.raises(KeyError):
        starting().add("navigation", NavItem("X", "home", lambda user: True))


def test_after_start_up_the_stores_are_closed():
    item = NavItem("Late", "home", lambda user: True)
    with pytest.raises(RegistryClosed, match=r"ready\(\)"):
        registry.add("nav_items", item)
    with pytest.raises(RegistryClosed):
        registry.put("readiness_checks", "late", lambda: {"ok": True})
    assert item not in registry["nav_items"]
    assert "late" not in registry["readiness_checks"]


def test_what_a_reader_gets_cannot_be_changed_behind_the_registry():
    with pytest.raises(AttributeError):
        registry["nav_items"].append(NavItem("Late", "home", lambda user: True))
    with pytest.raises(TypeError):
        registry["readiness_checks"]["late"] = lambda: {"ok": True}


def test_during_start_up_an_app_adds_and_puts_entries_in_order():
    fresh = starting()
    fresh.add("url_mounts", UrlMount("a/", "a.urls"))
    fresh.add("url_mounts", UrlMount("b/", "b.urls"))
    fresh.put("readiness_checks", "engines", dict)
    assert [mount.prefix for mount in fresh["url_mounts"]] == ["a/", "b/"]
    assert fresh["readiness_checks"]["engines"] is dict


def test_a_name_is_registered_once_and_a_store_is_used_by_its_kind():
    fresh = starting()
    fresh.put("readiness_checks", "engines", dict)
    with pytest.raises(ValueError, match="already registered"):
        fresh.put("readiness_checks", "engines", list)
    with pytest.raises(TypeError, match=r"registry\.put"):
        fresh.add("readiness_checks", dict)
    with pytest.raises(TypeError, match=r"registry\.add"):
        fresh.put("nav_items", "home", dict)
    assert fresh["readiness_checks"]["engines"] is dict


def test_the_apps_filled_the_registry_in_ready():
    assert {item.url_name for item in registry["nav_items"]} >= {"home", "chat:index", "inference:engines", "account"}
    assert {str(route.pattern) for route in registry["websocket_routes"]} >= {"ws/chat/", "ws/status/"}
    assert {mount.prefix for mount in registry["url_mounts"]} >= {"chat/", "engines/", "account/"}
    assert "engines" in registry["readiness_checks"]
    assert {check.__module__ for check in registry["doctor_checks"]} >= {
        "inference.health_checks",
        "inference.doctor_checks_ops",
        "inference.harmony_vocabulary",
    }
    assert set(registry["role_checks"]) == {"member", "auditor", "admin"}


def test_the_mounted_url_confs_answer_at_their_prefix():
    assert reverse("chat:index") == "/chat/"
    assert reverse("inference:engines") == "/engines/"
    assert reverse("account") == "/account/"


def test_has_role_asks_the_registered_checks_and_fails_closed(alice, audrey, adam):
    assert has_role(alice, "member")
    assert not has_role(alice, "admin")
    assert has_role(audrey, "auditor")
    assert not has_role(audrey, "member")
    assert has_role(adam, "admin")
    assert not has_role(adam, "superhero"), "a role nobody registered is held by nobody"


def test_the_home_page_shows_the_role_widget_of_the_accounts_app(alice, user_factory, client_for):
    assert b'<span class="badge">Members</span>' in client_for(alice).get("/").content
    mallory = user_factory("mallory", role=None)
    assert b"no role yet" in client_for(mallory).get("/").content


def test_readyz_details_still_need_the_admin_role(alice, adam, client_for):
    assert "engines" in client_for(adam).get("/readyz").json()["checks"]["engines"]
    assert set(client_for(alice).get("/readyz").json()["checks"]["engines"]) == {"ok"}
    assert set(Client().get("/readyz").json()["checks"]["engines"]) == {"ok"}


# --- hooks ---------------------------------------------------------------------------------


def test_hooks_run_by_order_then_by_registration():
    calls: list[str] = []
    with (
        hooks.register_temporarily("test.point", lambda: calls.append("late"), order=10),
        hooks.register_temporarily("test.point", lambda: calls.append("first"), order=-5),
        hooks.register_temporarily("test.point", lambda: calls.append("second")),
        hooks.register_temporarily("test.point", lambda: calls.append("third")),
    ):
        for hook in hooks.get_hooks("test.point"):
            hook()
    assert calls == ["first", "second", "third", "late"]


def test_a_temporary_hook_is_gone_after_its_block_even_when_it_raises():
    def hook() -> None:
        pass

    seen: list[object] = []

    def use_and_fail() -> None:
        with hooks.register_temporarily("test.point", hook):
            seen.append(hooks.get_hooks("test.point"))
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError):
        use_and_fail()
    assert seen == [[hook]]
    assert hooks.get_hooks("test.point") == []
    assert "test.point" not in registry["hooks"]


def test_an_unknown_hook_name_has_no_hooks():
    assert hooks.get_hooks("nobody.registers.this") == []


def test_a_hook_is_registered_in_ready_not_later():
    with pytest.raises(RegistryClosed, match="ready"):
        hooks.register("test.point", print)
    assert hooks.get_hooks("test.point") == []


def test_during_start_up_register_works_directly_and_as_a_decorator(monkeypatch):
    monkeypatch.setattr(hooks, "registry", starting())

    @hooks.register("test.point", order=1)
    def decorated() -> str:
        return "decorated"

    def direct() -> str:
        return "direct"

    assert hooks.register("test.point", direct) is direct
    assert decorated() == "decorated", "the decorator returns the function itself"
    assert hooks.get_hooks("test.point") == [direct, decorated]


# --- portal hosts the apps, it never imports them -------------------------------------------


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_portal_imports_no_app():
    offenders = {
        f"{path.relative_to(PORTAL.parent)}: {name}"
        for path in PORTAL.rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in APPS
    }
    assert offenders == set()


def test_the_import_check_sees_lazy_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def late():\n    from chat.models import Message\n    import inference.status\n")
    assert imported_modules(sample) == {"chat.models", "inference.status"}


def test_every_sequence_store_starts_empty_in_a_fresh_registry():
    fresh = starting()
    assert all(fresh[key] == () for key in SEQUENCE_STORES)
