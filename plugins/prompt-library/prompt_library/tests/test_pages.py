"""The prompt library's pages and the JSON its composer action reads, through HTTP."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from portal import __version__
from portal.plugins.discovery import discover
from prompt_library.library import fill
from prompt_library.models import PromptTemplate

LIST = "/plugins/prompt-library/"
NEW = "/plugins/prompt-library/new/"
API = "/plugins/prompt-library/api/templates/"


def test_the_package_declares_its_entry_point_and_the_portal_accepts_it():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["portal.plugins"]["prompt-library"]
    module, _, name = target.partition(":")
    discovery = discover([f"{module}.{name}"], portal_version=__version__, plugin_settings={}, use_entry_points=False)
    assert [(plugin.slug, plugin.version) for plugin in discovery.found] == [("prompt-library", "0.1.0")]


def test_a_member_writes_a_template_and_sees_its_variables(person, client_of):
    alice = client_of(person("alice"))
    response = alice.post(NEW, {"title": "Summary", "body": "Summarise {{text}} for {{ audience }}.", "shared": "on"})
    assert response.status_code == 302
    page = alice.get(LIST).content.decode()
    assert "Summary" in page
    assert "<code>text</code> <code>audience</code>" in page
    template = PromptTemplate.objects.get()
    assert template.variables() == ["text", "audience"]


def test_the_team_uses_a_shared_template_but_only_its_owner_changes_it(person, client_of):
    alice, bob = person("alice"), person("bob")
    shared = PromptTemplate.objects.create(owner=alice, title="Shared", body="x", shared=True)
    PromptTemplate.objects.create(owner=alice, title="Alice only", body="y", shared=False)
    as_bob = client_of(bob)
    titles = [item["title"] for item in as_bob.get(API).json()["templates"]]
    assert titles == ["Shared"]
    assert as_bob.get(f"{LIST}{shared.pk}/edit/").status_code == 404
    assert as_bob.post(f"{LIST}{shared.pk}/edit/", {"title": "Mine now", "body": "z"}).status_code == 404
    assert as_bob.post(f"{LIST}{shared.pk}/delete/").status_code == 404
    shared.refresh_from_db()
    assert (shared.title, shared.owner) == ("Shared", alice)


def test_the_owner_edits_and_deletes_a_template(person, client_of):
    alice = person("alice")
    template = PromptTemplate.objects.create(owner=alice, title="Old", body="x")
    client = client_of(alice)
    assert client.post(f"{LIST}{template.pk}/edit/", {"title": "New", "body": "Hi {{name}}"}).status_code == 302
    template.refresh_from_db()
    assert (template.title, template.body, template.shared) == ("New", "Hi {{name}}", False)
    assert client.post(f"{LIST}{template.pk}/delete/").status_code == 302
    assert not PromptTemplate.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"title": "", "body": "x"}, "This field is required"),
        ({"title": "   ", "body": "x"}, "This field is required"),
        ({"title": "t", "body": "   "}, "This field is required"),
        ({"title": "t", "body": "a\x00b"}, "Null characters are not allowed"),
        ({"title": "t", "body": "x" * 51}, "longer than 50 characters"),
        ({"title": "t" * 201, "body": "x"}, "at most 200 characters"),
    ],
)
def test_a_bad_template_is_refused_with_the_reason_and_nothing_is_saved(person, client_of, settings, fields, error):
    settings.PORTAL_PLUGIN_SETTINGS = {"prompt-library": {"max_body_chars": 50}}
    response = client_of(person("alice")).post(NEW, fields)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not PromptTemplate.objects.exists()


@pytest.mark.parametrize("path", [LIST, NEW, API])
def test_people_without_the_member_role_are_refused(person, client_of, path):
    assert client_of(person("audrey", "Auditors")).get(path).status_code == 403


def test_the_composer_dialog_gets_the_templates_with_their_variables(person, client_of):
    alice = person("alice")
    PromptTemplate.objects.create(owner=alice, title="Mail", body="Dear {{name}}, {{name}}!")
    (item,) = client_of(alice).get(API).json()["templates"]
    assert (item["title"], item["variables"], item["mine"], item["owner"]) == ("Mail", ["name"], True, "alice")


def test_members_see_the_nav_item_and_the_composer_action(person, client_of):
    client = client_of(person("alice"))
    assert 'data-nav="prompt-library:list"' in client.get("/").content.decode()
    chat = client.get("/chat/").content.decode()
    assert "Insert template" in chat
    assert "/static/prompt_library/insert.js" in chat


def test_filling_replaces_known_variables_and_keeps_unknown_ones():
    assert fill("Hi {{name}}, {{ name }} and {{other}}", {"name": "Ann"}) == "Hi Ann, Ann and {{other}}"
