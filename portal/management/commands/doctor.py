"""`manage.py doctor`: say why the portal does not open, and what to change."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.doctor import FAIL, OK, WARN, run_checks, run_sso_checks


class Command(BaseCommand):
    help = "Diagnose the usual causes of a portal that does not open; exit 1 when a check fails."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--url", help="the address people open (e.g. https://portal.example.com) to test WebSockets"
        )
        parser.add_argument("--json", action="store_true", help="print the findings as JSON")
        parser.add_argument(
            "--sso", action="store_true", help="check the company sign-in (OpenID Connect, LDAP) instead"
        )
        parser.add_argument("--user", help="with --sso: look this user up in LDAP and show the groups it maps to")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["user"] and not options["sso"]:
            raise CommandError("--user goes with --sso.")
        findings = run_sso_checks(options["user"]) if options["sso"] else run_checks(options["url"])
        if options["json"]:
            self.stdout.write(json.dumps([asdict(finding) for finding in findings], indent=2))
        else:
            marks = {OK: self.style.SUCCESS("ok  "), WARN: self.style.WARNING("warn"), FAIL: self.style.ERROR("FAIL")}
            for finding in findings:
                self.stdout.write(f"[{marks[finding.status]}] {finding.check}: {finding.detail}")
                if finding.fix and finding.status != OK:
                    self.stdout.write(f"       fix: {finding.fix}")
        failed = [finding.check for finding in findings if finding.status == FAIL]
        if failed:
            raise CommandError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
