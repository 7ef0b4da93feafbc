"""Personal API keys from the command line: `apikey create USER --name N`, `apikey revoke PREFIX`, `apikey list`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts import api_keys
from accounts.api_keys import ApiKeyInvalid


class Command(BaseCommand):
    help = "Create (the key is printed once), revoke or list personal API keys."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create a key for a user and print it once")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="what the key is for, e.g. 'laptop notebook'")
        create.add_argument("--expires", type=int, metavar="DAYS", help="expire after DAYS days (default: never)")
        create.add_argument("--models", default="", help="comma-separated served model names (default: all)")
        revoke = actions.add_parser("revoke", help="revoke a key by its prefix (lp_xxxxxxxx)")
        revoke.add_argument("prefix")
        listing = actions.add_parser("list", help="list keys, of one user or of everyone")
        listing.add_argument("username", nargs="?")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except ApiKeyInvalid as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from None

    def _user(self, username: str) -> Any:
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

    def _create(self, options: dict[str, Any]) -> None:
        owner = self._user(options["username"])
        models = [name for name in options["models"].split(",") if name.strip()]
        key, secret = api_keys.create_key(owner, options["name"], expires_in_days=options["expires"], models=models)
        self.stderr.write(f"Created {key.prefix} for {owner.get_username()}. The key is shown only now:")
        self.stdout.write(secret)

    def _revoke(self, options: dict[str, Any]) -> None:
        key = api_keys.find(options["prefix"])
        if not api_keys.revoke(key):
            self.stdout.write(f"{key.prefix} was already revoked.")
            return
        self.stdout.write(f"Revoked {key.prefix} ({key.name}) of {key.owner.get_username()}.")

    def _list(self, options: dict[str, Any]) -> None:
        from accounts.models import ApiKey

        keys = ApiKey.objects.select_related("owner")
        if options["username"]:
            keys = keys.filter(owner=self._user(options["username"]))
        for key in keys:
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            expires = f"{key.expires_at:%Y-%m-%d}" if key.expires_at else "never"
            models = ",".join(key.model_names) or "all"
            self.stdout.write(
                f"{key.prefix}  {api_keys.status(key):8} {key.owner.get_username():16} {key.name!r} "
                f"models={models} expires={expires} last used={used}"
            )
        if not keys:
            self.stdout.write("No API keys.")
