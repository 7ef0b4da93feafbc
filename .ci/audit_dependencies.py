"""Audit the dependencies for published advisories: pip-audit for Python, npm audit for the lockfile.

Python: pip-audit reads what is installed in the environments made from requirements*.txt
(``.venv``: requirements.txt and requirements-dev.txt; ``.venv-engine``: the engine's file),
so the transitive dependencies pip resolved are audited too, exactly as CI tests them. npm:
``npm audit`` on package-lock.json.

Any finding fails, unless ``.ci/audit-exceptions`` lists its advisory (by id or alias) with
a reason. When the advisory services cannot be reached (some build machines reach only the
package registries), the audit says so loudly and passes, or fails with
``PORTAL_REQUIRE_AUDIT=1``: an audit that could not ask is not a clean audit, but it is not a
finding either. docs/deploy.md ("Dependency audit") explains.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCEPTIONS = ROOT / ".ci" / "audit-exceptions"
# Each environment and the requirement files it is installed from.
ENVIRONMENTS = {".venv": "requirements.txt, requirements-dev.txt", ".venv-engine": "requirements-engine*.txt"}


class Unavailable(Exception):
    """The advisory service could not be asked (unreachable, refused, or answered nothing usable)."""


@dataclass
class Finding:
    ecosystem: str
    package: str
    version: str
    ids: list[str]
    summary: str

    def line(self) -> str:
        return f"{self.ecosystem} {self.package} {self.version}: {', '.join(self.ids)} {self.summary}".rstrip()


def say(text: str = "") -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def read_exceptions(path: Path) -> dict[str, str]:
    """Return {advisory id: reason}; an entry without a reason is refused (SystemExit)."""
    exceptions: dict[str, str] = {}
    if not path.exists():
        return exceptions
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        advisory, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path.name}:{number}: {advisory} has no reason; every exception must say why")
        exceptions[advisory.upper()] = reason.strip()
    return exceptions


def pip_audit(venv: Path) -> tuple[list[Finding], list[str]]:
    """Audit one environment; return its findings and the packages that could not be audited."""
    site = subprocess.run(  # noqa: S603 - our own environment's python
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "--path", site, "--format", "json", "--output", str(output)]
        result = subprocess.run(  # noqa: S603 - our own argv
            [*command, "--progress-spinner", "off", "--timeout", "30"], capture_output=True, text=True, check=False
        )
        if not output.exists():
            if "No module named pip_audit" in result.stderr:
                raise SystemExit("pip-audit is not installed: it is pinned in requirements-dev.txt (make dev-deps)")
            raise Unavailable(_last_line(result.stderr))
        report = json.loads(output.read_text())
    dependencies = report.get("dependencies", [])
    skipped = [dependency for dependency in dependencies if "skip_reason" in dependency]
    # pip-audit exits 0 with "No known vulnerabilities found" when the service answered 404 for
    # every package: that is a service that could not be asked, not a clean bill of health.
    if not dependencies or len(skipped) == len(dependencies):
        reason = skipped[0]["skip_reason"] if skipped else "no dependency was reported"
        raise Unavailable(f"no package could be audited, e.g. {reason}")
    findings = [
        Finding("pypi", dependency["name"], dependency.get("version", ""), [vuln["id"], *vuln.get("aliases", [])], "")
        for dependency in dependencies
        for vuln in dependency.get("vulns", [])
    ]
    return findings, [f"{dependency['name']}: {dependency['skip_reason']}" for dependency in skipped]


def npm_audit() -> list[Finding]:
    """Audit package-lock.json (no node_modules needed)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: make node needs it too")
    command = [npm, "audit", "--package-lock-only", "--json"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603 - our own argv
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise Unavailable(_last_line(result.stderr)) from None
    if "vulnerabilities" not in report:
        raise Unavailable(str(report.get("message") or _last_line(result.stderr)))
    findings = []
    for name, entry in report["vulnerabilities"].items():
        for via in entry.get("via", []):
            if isinstance(via, dict):  # a plain string names the vulnerable package it comes through
                advisory = str(via.get("url", "")).rstrip("/").rsplit("/", 1)[-1]
                ids = [advisory, str(via.get("source", ""))]
                summary = f"({via.get('severity', '?')}) {via.get('title', '')}"
                findings.append(Finding("npm", str(via.get("name", name)), str(via.get("range", "")), ids, summary))
    return findings


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def main() -> int:
    exceptions = read_exceptions(EXCEPTIONS)
    findings: list[Finding] = []
    unavailable: list[str] = []
    for name, source in ENVIRONMENTS.items():
        venv = ROOT / name
        if not (venv / "bin" / "python").exists():
            unavailable.append(f"pip-audit of {name} ({source}): the environment is not installed")
            continue
        try:
            found, unaudited = pip_audit(venv)
        except Unavailable as exc:
            unavailable.append(f"pip-audit of {name} ({source}): {exc}")
            continue
        say(f"pip-audit of {name} ({source}): {len(found)} finding(s)")
        for line in unaudited:
            say(f"  not audited: {line}")
        findings += found
    try:
        found = npm_audit()
        say(f"npm audit of package-lock.json: {len(found)} finding(s)")
        findings += found
    except Unavailable as exc:
        unavailable.append(f"npm audit of package-lock.json: {exc}")

    refused = []
    for finding in findings:
        reason = next((exceptions[i.upper()] for i in finding.ids if i.upper() in exceptions), None)
        if reason is None:
            refused.append(finding)
            say(f"FOUND   {finding.line()}")
        else:
            say(f"ignored {finding.line()} -- {reason}")
    if refused:
        say(f"\n{len(refused)} advisory finding(s): upgrade, or list them with a reason in .ci/audit-exceptions.")
        return 1
    if unavailable:
        say("\n!!! THE DEPENDENCY AUDIT COULD NOT RUN COMPLETELY: the advisory service was not reached !!!")
        for line in unavailable:
            say(f"!!! {line}")
        if os.environ.get("PORTAL_REQUIRE_AUDIT") == "1":
            say("!!! PORTAL_REQUIRE_AUDIT=1: failing.")
            return 1
        say("!!! Not a finding, so CI goes on (PORTAL_REQUIRE_AUDIT=1 makes this fail).")
        return 0
    say("No advisory findings outside .ci/audit-exceptions.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
