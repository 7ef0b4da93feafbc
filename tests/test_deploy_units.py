"""The systemd units in deploy/systemd: valid for systemd, and starting what the docs say.

`systemd-analyze verify` checks each unit with the install paths (/opt/portal) pointed at this
checkout, so the commands it names must exist here too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
UNIT_FILES = sorted(path for path in UNITS.iterdir() if path.suffix in (".service", ".timer", ".target"))


def settings_of(name: str) -> list[str]:
    """The unit's ``Key=value`` lines (keys such as Environment= may repeat, so no configparser)."""
    return [line.strip() for line in (UNITS / name).read_text().splitlines() if "=" in line and line[0].isalpha()]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    env_file = tmp_path / "portal.env"
    env_file.write_text((UNITS / "portal.env.example").read_text())
    names = []
    for path in UNIT_FILES:
        text = path.read_text()
        text = text.replace("/opt/portal/.venv/bin/python", sys.executable).replace("/opt/portal", str(ROOT))
        text = text.replace("/etc/portal/portal.env", str(env_file))
        # A template is verified as one of its instances.
        name = path.name.replace("@.service", "@8001.service")
        (tmp_path / name).write_text(text)
        names.append(f"./{name}")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_web_units_bind_to_loopback_behind_the_proxy_and_share_the_metrics_directory() -> None:
    web = settings_of("portal-web@.service")
    [start] = [line for line in web if line.startswith("ExecStart=")]
    assert start.endswith("-b 127.0.0.1 -p %i --proxy-headers portal.asgi:application")
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/portal-metrics" in web
    prepare = settings_of("portal-prepare.service")
    assert "ExecStartPre=+/bin/rm -rf /run/portal-metrics" in prepare


def test_the_units_run_management_commands_that_exist() -> None:
    commands = set()
    for path in UNIT_FILES:
        commands.update(re.findall(r"manage\.py (\w+)", path.read_text()))
    assert {"runengine", "backup", "migrate", "collectstatic"} <= commands
    result = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert commands <= set(result.stdout.split()), commands - set(result.stdout.split())


def test_nginx_forwards_to_every_port_the_docs_enable() -> None:
    ports = re.findall(r"server 127\.0\.0\.1:(\d+);", (ROOT / "deploy" / "nginx.conf").read_text())
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for port in ports:
        assert f"portal-web@{port}" in docs
