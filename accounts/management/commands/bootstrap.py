"""Create the first admin account, once, and print its generated password."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import PasswordChangeRequired
from accounts.roles import ADMINS, assign_role


class Command(BaseCommand):
    help = "Create the admin account on first run and print its one-time password."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if (
            user_model.objects.filter(groups__name=ADMINS).exists()
            or user_model.objects.filter(is_superuser=True).exists()
        ):
            return
        username = options["username"]
        if user_model.objects.filter(username=username).exists():
            raise CommandError(
                f"There is no admin yet, and the name {username!r} is taken by a user who is not one. "
                "Create the first admin under another name: python manage.py bootstrap --username NAME"
            )
        password = secrets.token_urlsafe(15)
        admin = user_model.objects.create_user(username=username, password=password)
        assign_role(admin, ADMINS)
        # The password travels through a terminal: the first login must replace it.
        PasswordChangeRequired.objects.create(user=admin)
        # Printed once here; only the hash is stored.
        self.stdout.write(
            "\n  First run: an admin account was created.\n"
            f"    username: {admin.get_username()}\n"
            f"    password: {password}\n"
            "  Write the password down now: it is not shown again and not stored in clear text.\n"
            "  The first login asks for a new password before anything else.\n"
        )
