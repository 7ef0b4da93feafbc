"""``manage.py startplugin``: a new plugin package that the portal loads and that shows a page."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib

import httpx
import pytest
from django.core.management import CommandError, call_command

from portal import __version__
from portal.plugins.discovery import discover
from tests.browser import BASE_DIR, PASSWORD, WebPortal


def make(name, directory):
    out = io.StringIO()
    call_command("startplugin", name, directory=str(directory), stdout=out)
    return out.getvalue()


def test_it_makes_a_package_with_the_entry_point_the_portal_accepts(tmp_path):
    said = make("team-notes", tmp_path)
    root = tmp_path / "team-notes"
    assert f"pip install -e {root}" in said
    files = sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "team_notes/__init__.py",
        "team_notes/apps.py",
        "team_notes/templates/team_notes/index.html",
        "team_notes/tests/__init__.py",
        "team_notes/tests/test_pages.py",
        "team_notes/urls.py",
        "team_notes/views.py",
    ]
    entry = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["portal.plugins"]
    assert entry == {"team-notes": "team_notes.apps:TeamNotesConfig"}
    sys.path.insert(0, str(root))
    try:
        discovery = discover(["team_notes"], portal_version=__version__, plugin_settings={}, use_entry_points=False)
    finally:
        sys.path.remove(str(root))
    assert [(plugin.slug, plugin.version) for plugin in discovery.found] == [("team-notes", "0.1.0")]
    assert '{% extends "base.html" %}' in (root / "team_notes/templates/team_notes/index.html").read_text()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Bad Name", "not a plugin name"),
        ("1st-plugin", "not a plugin name"),
        ("double--dash", "not a plugin name"),
        ("x" * 41, "not a plugin name"),
        ("json", "exists already"),
    ],
)
def test_a_bad_name_is_refused_and_nothing_is_written(tmp_path, name, words):
    with pytest.raises(CommandError, match=words):
        make(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "team-notes").mkdir()
    (tmp_path / "team-notes" / "mine.txt").write_text("keep me")
    with pytest.raises(CommandError, match="exists already"):
        make("team-notes", tmp_path)
    assert [path.name for path in (tmp_path / "team-notes").iterdir()] == ["mine.txt"]


@pytest.fixture(scope="module")
def made_plugin(tmp_path_factory):
    directory = tmp_path_factory.mktemp("made")
    make("hello-page", directory)
    return directory / "hello-page"


def test_the_made_plugin_is_loaded_and_shows_its_page_and_its_own_test_passes(made_plugin, tmp_path):
    env = {
        "PYTHONPATH": os.pathsep.join([str(made_plugin), os.environ.get("PYTHONPATH", "")]),
        "PORTAL_PLUGINS": "hello_page",
    }
    web = WebPortal(tmp_path, env=env)
    web.start()
    try:
        web.create_member("ann")
        client = httpx.Client(base_url=web.url, timeout=10, follow_redirects=True)
        client.get("/accounts/login/")
        client.post(
            "/accounts/login/",
            data={"login": "ann", "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers={"Referer": f"{web.url}/accounts/login/"},
        )
        page = client.get("/plugins/hello-page/")
        assert page.status_code == 200
        assert "Hello, ann! This page comes from the hello-page plugin." in page.text
        assert 'data-nav="hello-page:index"' in page.text
    finally:
        web.stop()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(made_plugin / "hello_page" / "tests")],
        cwd=BASE_DIR,
        env={**web.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
