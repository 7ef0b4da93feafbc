"""``manage.py quota show|set|reset USER``: a user's policy and usage from the shell."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import ledger, usage
from accounts.policies import set_user_override

UNLIMITED_WORDS = ("unlimited", "none")
# Option of `quota set` -> policy field.
LIMIT_OPTIONS = {
    "tokens_per_day": "--tokens-per-day",
    "tokens_per_month": "--tokens-per-month",
    "requests_per_day": "--requests-per-day",
    "requests_per_minute": "--requests-per-minute",
    "concurrent_answers": "--concurrent",
    "max_tokens_per_answer": "--max-tokens",
    "max_prompt_tokens": "--max-prompt-tokens",
    "priority": "--priority",
}


def _limit(option: str, raw: str) -> int | None:
    if raw.strip().lower() in UNLIMITED_WORDS:
        return None
    try:
        return int(raw)
    except ValueError:
        raise CommandError(f"{option} must be a whole number or 'unlimited', not {raw!r}.") from None


class Command(BaseCommand):
    help = "Show a user's policy and usage, give them a personal policy, or reset today's usage."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        show = actions.add_parser("show", help="the user's effective policy and usage")
        show.add_argument("user")
        show.add_argument("--json", action="store_true", help="print JSON")
        change = actions.add_parser("set", help="give the user a personal policy (an override of their groups')")
        change.add_argument("user")
        for field, option in LIMIT_OPTIONS.items():
            change.add_argument(option, dest=field, metavar="N", help=f"{field.replace('_', ' ')} (or 'unlimited')")
        change.add_argument("--models", help="comma-separated served model names, or 'all'")
        reset = actions.add_parser("reset", help="give back what the user used today (needs a reason)")
        reset.add_argument("user")
        reset.add_argument("--reason", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._user(options["user"])
        action = options["action"]
        if action == "show":
            self._show(user, options["json"])
        elif action == "set":
            self._set(user, options)
        else:
            try:
                adjustment = ledger.reset(user, reason=options["reason"], actor=None)
            except ValueError as exc:
                raise CommandError(f"--reason: {exc}.") from None
            if adjustment is None:
                self.stdout.write(f"{user} used nothing today; nothing to reset.")
            else:
                self.stdout.write(f"Gave back {-adjustment.tokens:,} tokens to {user} ({adjustment.reason}).")

    def _user(self, name: str) -> Any:
        model = get_user_model()
        try:
            return model.objects.get(**{model.USERNAME_FIELD: name})
        except model.DoesNotExist:
            raise CommandError(f"No user {name!r}.") from None

    def _show(self, user: Any, as_json: bool) -> None:
        report = usage.summary(user)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
            return
        policy = report["policy"]
        models = policy["models"] if policy["models"] == "all" else ", ".join(policy["models"]) or "none"
        self.stdout.write(f"{user}: {policy['source']}")
        self.stdout.write(f"  models: {models}")
        for field in LIMIT_OPTIONS:
            value = policy[field]
            self.stdout.write(f"  {field.replace('_', ' ')}: {'unlimited' if value is None else f'{value:,}'}")
        self.stdout.write(f"  today: {report['today']['tokens']:,} tokens, {report['today']['requests']:,} answers")
        self.stdout.write(f"  this month: {report['month']['tokens']:,} tokens")
        self.stdout.write(f"  reserved now: {report['held_tokens']:,} tokens in {report['open_answers']} answers")

    def _set(self, user: Any, options: dict[str, Any]) -> None:
        changes: dict[str, Any] = {
            field: _limit(option, options[field])
            for field, option in LIMIT_OPTIONS.items()
            if options[field] is not None
        }
        if options["models"] is not None:
            names = [name.strip() for name in options["models"].split(",") if name.strip()]
            if not names:
                raise CommandError("--models needs at least one model name, or 'all'.")
            changes["model_names"] = None if names == ["all"] else names
        if not changes:
            raise CommandError("Nothing to set: give at least one limit or --models.")
        try:
            set_user_override(user, None, **changes)
        except ValidationError as exc:
            problems = "; ".join(
                f"{LIMIT_OPTIONS.get(field, '--models' if field == 'model_names' else field)}: {' '.join(messages)}"
                for field, messages in exc.message_dict.items()
            )
            raise CommandError(f"Refused, nothing was changed. {problems}") from None
        self._show(user, as_json=False)
